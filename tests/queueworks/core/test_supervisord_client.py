"""supervisord is reached through one client (queueworks/core/supervisord_client.py):
no other module of the package builds its own XML-RPC transport or proxy.
Read with the ast module: a mention in a comment or a string does not count."""

from __future__ import annotations

import ast
from pathlib import Path

import queueworks

PACKAGE = Path(queueworks.__file__).resolve().parent
CLIENT = PACKAGE / "core" / "supervisord_client.py"
TRANSPORTS = ("SupervisorTransport", "ServerProxy")


def transport_builders(root: Path, client: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == client:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in TRANSPORTS:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {name}")
    return found


def test_only_the_client_builds_a_supervisord_transport():
    assert transport_builders(PACKAGE, CLIENT) == []


def test_the_scan_finds_a_transport_built_elsewhere(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "client.py").write_text("import xmlrpc.client\nxmlrpc.client.ServerProxy('x')\n")
    (package / "other.py").write_text(
        "# SupervisorTransport(None)\ndef f():\n    from supervisor.xmlrpc import "
        "SupervisorTransport\n    return SupervisorTransport(None, None, 'unix://s')\n")
    assert transport_builders(package, package / "client.py") == [
        "pkg/other.py:4 SupervisorTransport"]
