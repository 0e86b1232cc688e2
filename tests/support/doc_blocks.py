"""The fenced code blocks of README.md and docs/*.md, with where they are.

A block's info string is its language, then tags (```` ```python no-run ````):

* ``python`` and ``sh`` blocks run against the live test system
  (tests/test_docs_blocks.py), unless tagged;
* ``no-run``: not meant to run there (production commands, placeholders to
  fill in, fragments of a file, commands that stop the system's programs);
* ``fresh-clone``: the README's Quick start and "Adding a task" recipe,
  run in a fresh clone of the repository by tests/test_readme.py;
* ``file=``, ``run``, ``for=``, ``append`` (tests/support/docs_blocks.py): a
  walk through a page in a new project of its own, carried out by that
  page's test (docs/add-to-your-project.md: tests/integration/test_adopt_package.py).

Blocks without a language (diagrams, sample output) and other languages
(nginx, yaml) are not code to run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
RUNNABLE_LANGUAGES = ("python", "sh")
TAGS = ("no-run", "fresh-clone")
# A page walk's tags, by name (``file=PATH``, ``run=shell``): tests/support/docs_blocks.py.
WALK_TAGS = ("file", "run", "for", "append")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    tags: tuple[str, ...]
    body: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(PROJECT_ROOT)}:{self.line}"

    @property
    def unknown_tags(self) -> list[str]:
        return [tag for tag in self.tags
                if tag not in TAGS and tag.partition("=")[0] not in WALK_TAGS]

    @property
    def runs_on_the_live_system(self) -> bool:
        return self.language in RUNNABLE_LANGUAGES and not self.tags


def fenced_blocks(text: str, path: Path = PROJECT_ROOT / "README.md") -> list[Block]:
    blocks = []
    for match in FENCE.finditer(text):
        language, *tags = match.group(1).split() or [""]
        blocks.append(Block(path=path, line=text.count("\n", 0, match.start()) + 1,
                            language=language, tags=tuple(tags), body=match.group(2)))
    return blocks


def documentation_files() -> list[Path]:
    return [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def documentation_blocks() -> list[Block]:
    return [block for path in documentation_files()
            for block in fenced_blocks(path.read_text(), path)]
