"""The package never imports the example project: arrows run project ->
package -> libraries.  Read with the ast module, so comments, docstrings and
strings that mention the project do not count, and every import form does
(``import x``, ``from x import y``, inside functions too)."""

import ast
from pathlib import Path

import queueworks

PACKAGE = Path(queueworks.__file__).resolve().parent
EXAMPLE_PACKAGES = ("projectname", "apps")


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def example_imports(root: Path) -> list[str]:
    return [f"{path.relative_to(root.parent)}:{line} imports {name}"
            for path in sorted(root.rglob("*.py"))
            for line, name in imports_of(path)
            if name.split(".")[0] in EXAMPLE_PACKAGES]


def test_the_package_imports_nothing_from_the_example_project():
    assert example_imports(PACKAGE) == []


def test_the_scan_finds_an_import_of_the_example_project(tmp_path):
    # The check above can fail: a package with one such import, in a function.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "ok.py").write_text('"""from projectname import x"""\n# import apps\nimport os\n')
    (package / "bad.py").write_text("def f():\n    from projectname.topology import TOPOLOGY\n")
    (package / "dynamic.py").write_text("import importlib\nimportlib.import_module('apps.x')\n")
    assert example_imports(package) == ["pkg/bad.py:2 imports projectname.topology",
                                        "pkg/dynamic.py:2 imports apps.x"]
