"""Every ``python`` and ``sh`` block of README.md and docs/*.md runs against
the live test system, unless its info string says it is not meant to run
there (tests/support/doc_blocks.py: ``no-run``, ``fresh-clone``).

python blocks run in ``manage.py shell -c`` with the live system's
environment; sh blocks run with bash (``set -e``: the first failing command
fails the block; curl fails on an HTTP error status).  The documented
addresses of the web server and Flower, and Flower's example credentials,
become the live system's; ``$TOKEN`` is a real Task API token of a task
operator.  A failure names the file, the line of the block and the error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.support.doc_blocks import (
    RUNNABLE_LANGUAGES, TAGS, Block, documentation_blocks, fenced_blocks,
)
from tests.support.live import FLOWER_AUTH, PROJECT_ROOT
from tests.test_readme import section

BLOCKS = documentation_blocks()
LIVE_BLOCKS = [block for block in BLOCKS if block.runs_on_the_live_system]
SH_PRELUDE = """set -eo pipefail
curl() { command curl --silent --show-error --fail-with-body "$@"; }
"""


def test_tags_are_known_and_only_the_readme_recipe_runs_in_a_fresh_clone():
    unknown = [(block.where, tag) for block in BLOCKS for tag in block.unknown_tags]
    assert not unknown, f"unknown tags (known: {TAGS}): {unknown}"
    recipe = [block.body for title in ("Quick start (fresh Debian machine)",
                                       "Adding a task on its own queue")
              for block in fenced_blocks(section(title))]
    fresh_clone = [block.body for block in BLOCKS if "fresh-clone" in block.tags]
    assert fresh_clone == recipe
    assert LIVE_BLOCKS, "no block runs on the live system"


def test_the_readme_usage_blocks_run_on_the_live_system():
    """The README's "Using it" examples are the first thing a user types."""
    usage = fenced_blocks(section("Using it"))
    assert {block.language for block in usage if block.runs_on_the_live_system} == set(RUNNABLE_LANGUAGES)


def _output(result: subprocess.CompletedProcess) -> str:
    return f"exit status {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"


def _sh_source(block: Block, live_system) -> str:
    body = (block.body
            .replace("http://127.0.0.1:8000", f"http://127.0.0.1:{live_system.web_port}")
            .replace("http://127.0.0.1:5555", f"http://127.0.0.1:{live_system.flower_port}")
            .replace("flower:change-me", ":".join(FLOWER_AUTH)))
    return SH_PRELUDE + body


@pytest.fixture
def operator_token(live_system):
    from tests.queueworks.taskapi.conftest import _make_user

    return _make_user(f"docs-{uuid.uuid4().hex[:8]}", operator=True).token


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(600)
@pytest.mark.parametrize("block", LIVE_BLOCKS, ids=[block.where for block in LIVE_BLOCKS])
def test_the_block_runs_on_the_live_system(block: Block, live_system, operator_token):
    env = {**live_system.env, "TOKEN": operator_token,
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    if block.language == "python":
        command = [live_system.bin("python"), "manage.py", "shell", "-c", block.body]
    else:
        command = ["bash", "-c", _sh_source(block, live_system)]
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=540)
    assert result.returncode == 0, f"{block.where}: the {block.language} block failed: {_output(result)}"
