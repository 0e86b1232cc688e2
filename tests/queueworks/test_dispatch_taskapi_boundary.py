"""The dispatch layer (publishing, the worker's fast paths) imports nothing of
the Task API; the Task API (its records, their outbox, HTTP) builds on
dispatch.  Arrows run one way: taskapi -> dispatch.  Read with the ast module,
so comments and strings do not count, and every import form does, inside
functions too: an import deferred into a function is still a dependency."""

from __future__ import annotations

from pathlib import Path

import queueworks

from tests.queueworks.test_package_boundary import imports_of

PACKAGE = Path(queueworks.__file__).resolve().parent


def imports_into(root: Path, target: str) -> list[str]:
    return [f"{path.relative_to(root.parent)}:{line} imports {name}"
            for path in sorted(root.rglob("*.py"))
            for line, name in imports_of(path)
            if name == target or name.startswith(f"{target}.")]


def test_dispatch_imports_nothing_from_the_task_api():
    assert imports_into(PACKAGE / "dispatch", "queueworks.taskapi") == []


def test_the_scan_finds_an_import_of_the_task_api_in_a_function(tmp_path):
    package = tmp_path / "dispatch"
    package.mkdir()
    (package / "ok.py").write_text('"""from queueworks.taskapi import x"""\nimport os\n')
    (package / "bad.py").write_text(
        "def f():\n    from queueworks.taskapi.models import TaskRecord\n")
    assert imports_into(package, "queueworks.taskapi") == [
        "dispatch/bad.py:2 imports queueworks.taskapi.models"]
