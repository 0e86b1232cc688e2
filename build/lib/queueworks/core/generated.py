"""Files generated from the topology and committed (supervisor, systemd).

One routine compares what the topology renders with what is on disk, then
either writes the difference or (``--check``) prints it as a unified diff and
fails, so drift in any generated file is caught the same way.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from django.core.management.base import CommandError


def sync_generated_files(*, root: Path, wanted: dict[Path, str], stale: list[Path], check: bool,
                         what: str, command: str, stdout) -> None:
    """``wanted`` and ``stale`` are relative to ``root``; stale files are removed."""
    diffs = []
    for relative, text in wanted.items():
        path = root / relative
        current = path.read_text() if path.exists() else ""
        if current != text:
            diffs.append((relative, current, text))
    diffs += [(relative, (root / relative).read_text(), "") for relative in stale]

    if check:
        if not diffs:
            stdout.write(f"{what} match the topology.")
            return
        for relative, current, text in diffs:
            stdout.write("".join(difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=f"{relative} (committed)", tofile=f"{relative} (rendered)",
            )))
        raise CommandError(
            f"{len(diffs)} {what} differ from the topology; "
            f"run `python manage.py {command}` and commit the result."
        )

    for relative, _, text in diffs:
        path = root / relative
        if text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            stdout.write(f"wrote {path}")
        else:
            path.unlink()
            stdout.write(f"removed {path}")
    if not diffs:
        stdout.write(f"{what} already up to date.")
