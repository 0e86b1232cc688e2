"""A documentation page's code blocks, read as instructions and carried out.

A fenced block's info string says what a reader does with it, after the
language (GitHub shows the language only):

* ``file=PATH``: the block is the whole of PATH; with ``append``, it goes at
  the end of PATH; a ``diff`` block is an edit of PATH (`` ``, ``-``, ``+``
  lines, one hunk);
* ``run``: shell commands; ``run=background``: the command that keeps
  running (supervisord); ``run=shell``: Python typed into
  ``python manage.py shell``;
* ``for=VARIANT``: only in that walk through the page (blocks without it
  are in every walk).

Blocks with none of these are illustrations, and are not run.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    section: str
    language: str
    body: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def actionable(self) -> bool:
        return bool({"file", "run", "for"} & set(self.options))

    def runs_in(self, variant: str) -> bool:
        return self.options.get("for", variant) == variant


def sections(page: str) -> dict[str, str]:
    """``## `` heading -> its text, in page order."""
    parts = re.split(r"^## (.+)$", page, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def blocks(page: str) -> list[Block]:
    found = []
    for title, text in sections(page).items():
        for language, info, body in FENCE.findall(text):
            options = {}
            for word in info.split():
                name, _, value = word.partition("=")
                options[name] = value
            found.append(Block(title, language, body, options))
    return found


def walk(page: str, variant: str, section_prefixes: tuple[str, ...]) -> list[Block]:
    """The actionable blocks of one walk: the sections named (by prefix), in
    that order, and in each the blocks for this variant."""
    chosen = []
    by_section = {}
    for block in blocks(page):
        by_section.setdefault(block.section, []).append(block)
    for prefix in section_prefixes:
        titles = [title for title in by_section if title.startswith(prefix)]
        assert len(titles) == 1, f"no single section starting {prefix!r}: {list(by_section)}"
        chosen += [block for block in by_section[titles[0]]
                   if block.actionable and block.runs_in(variant)]
    return chosen


# -- carrying a block out ------------------------------------------------------
def write_file(root: Path, block: Block) -> None:
    path = root / block.options["file"]
    path.parent.mkdir(parents=True, exist_ok=True)
    if block.language == "diff":
        path.write_text(apply_diff(path.read_text(), block.body))
    elif "append" in block.options:
        with path.open("a") as file:
            file.write("\n" + block.body)
    else:
        path.write_text(block.body)


def apply_diff(text: str, diff: str) -> str:
    """One hunk: its context and ``-`` lines must appear together, once."""
    before, after = [], []
    for line in diff.splitlines():
        marker, content = (line[:1], line[1:]) if line else (" ", "")
        if marker in " -":
            before.append(content)
        if marker in " +":
            after.append(content)
    old, new = "\n".join(before) + "\n", "\n".join(after) + "\n"
    assert text.count(old) == 1, f"the diff's old lines are not in the file once:\n{old}"
    return text.replace(old, new)


def run_commands(block: Block, cwd: Path, env: dict[str, str], log,
                 timeout: float = 600) -> tuple[Path, subprocess.CompletedProcess]:
    """The block as one bash script; returns the directory it ended in (a
    ``cd`` carries over to the next block) and the result."""
    with tempfile.NamedTemporaryFile("r", suffix=".cwd") as where:
        script = f"set -euo pipefail\n{block.body}\npwd > {where.name}\n"
        log.write(f"{time.strftime('%H:%M:%S', time.gmtime())} $ {block.body}")
        result = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=timeout)
        log.write(result.stdout + result.stderr)
        log.flush()
        ended = Path(where.read().strip()) if result.returncode == 0 else cwd
    return ended, result


def run_in_shell(block: Block, cwd: Path, env: dict[str, str], log,
                 timeout: float = 180) -> subprocess.CompletedProcess:
    """``python manage.py shell`` reading the block from its standard input."""
    log.write(f"{time.strftime('%H:%M:%S', time.gmtime())} >>> {block.body}")
    result = subprocess.run(["python", "manage.py", "shell"], input=block.body, cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    log.write(result.stdout + result.stderr)
    log.flush()
    return result
