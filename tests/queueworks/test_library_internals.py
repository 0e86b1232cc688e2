"""Private names of celery, kombu, py-amqp and billiard appear only in the
compat modules (queueworks/dispatch/compat/), where each is version-guarded
and pinned by a contract test.

Code is read with the ``tokenize`` module, so comments and strings
(docstrings, f-string text) never count.  A *use* outside the compat modules
is any of:

1. **a private import**: ``import``/``from`` a module of those libraries with
   a ``_`` component (``celery._state``), or a ``_`` name imported from one;
2. **a private attribute reached from a library name**: ``R.a._x`` where the
   root ``R`` is bound in the module by an import from those libraries or from
   the compat modules (they hand library objects out), or by a module-level
   alias of such a root (``_stock = compat_celery.delayed_delivery``);
3. **an inherited private**: in a class whose MRO holds a class of those
   libraries, ``def _x``, ``self._x``, ``cls._x`` or ``super()._x`` where
   ``_x`` is a private name the libraries define (``def _x``, ``class _x`` or
   ``obj._x = ...`` in their sources) and the class does not assign itself;
4. **a py-amqp connection or channel rebuilt in place**: a statement
   ``obj.name = ...`` (``obj`` not ``self``/``cls``) where ``name`` is a method
   or attribute of py-amqp's Connection, Channel or Transport that the project
   defines nowhere itself: replacing a channel's ``basic_ack``, rewriting a
   connection's ``client_properties``.

Python's own dunder names (``__init__``, ``__name__``) are never counted.
"""

from __future__ import annotations

import ast
import importlib
import io
import sys
import tokenize
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import amqp
import billiard
import celery
import kombu

import queueworks

ROOT = Path(queueworks.__file__).resolve().parent.parent
SCANNED = ("queueworks", "projectname", "apps")
COMPAT = ("queueworks", "dispatch", "compat")
LIBRARIES = ("celery", "kombu", "amqp", "billiard")
COMPAT_MODULE = "queueworks.dispatch.compat"
LIVE_AMQP_SOURCES = ("connection.py", "channel.py", "abstract_channel.py", "transport.py")
PYTHON_DUNDERS = frozenset(
    name for kind in (object, type, type(lambda: 0), type(sys), BaseException, int, dict)
    for name in dir(kind) if name.startswith("__")
) | {"__all__", "__version__", "__wrapped__", "__path__", "__file__", "__enter__",
     "__exit__", "__call__", "__iter__", "__next__", "__getattr__", "__get__", "__set__"}
_SKIPPED = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.ENCODING,
            tokenize.ENDMARKER} | {getattr(tokenize, name) for name in (
                "FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, name)}


@dataclass(frozen=True)
class Use:
    path: str
    line: int
    rule: int
    name: str

    def __str__(self):
        return f"{self.path}:{self.line} rule {self.rule}: {self.name}"


def code_tokens(source: str) -> list[tokenize.TokenInfo]:
    """Tokens of code only: no comments, strings or f-string text."""
    return [token for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type not in _SKIPPED]


def _private(name: str) -> bool:
    return name.startswith("_") and name != "_" and name not in PYTHON_DUNDERS


def _defined_in(paths) -> set[str]:
    """Names a library's sources define: ``def x``, ``class x``, ``obj.x = ...``."""
    names = set()
    for path in paths:
        try:
            tokens = code_tokens(path.read_text(errors="replace"))
        except (tokenize.TokenError, SyntaxError):
            continue
        for i in range(1, len(tokens) - 1):
            before, token, after = tokens[i - 1].string, tokens[i], tokens[i + 1].string
            if token.type == tokenize.NAME and (
                    before in ("def", "class") or (before == "." and after == "=")):
                names.add(token.string)
    return names


@lru_cache(maxsize=None)
def library_private_names() -> frozenset[str]:
    paths = [path for library in (celery, kombu, amqp, billiard)
             for path in Path(library.__file__).parent.rglob("*.py")]
    return frozenset(name for name in _defined_in(paths) if _private(name))


@lru_cache(maxsize=None)
def live_amqp_names() -> frozenset[str]:
    base = Path(amqp.__file__).parent
    return frozenset(name for name in _defined_in(base / f for f in LIVE_AMQP_SOURCES)
                     if not name.startswith("__"))


def project_definitions(trees) -> set[str]:
    """Names the project defines: functions, classes, class-level fields, and
    attributes it assigns on ``self``/``cls``."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            if isinstance(node, ast.ClassDef):
                for statement in node.body:
                    targets = (statement.targets if isinstance(statement, ast.Assign)
                               else [statement.target] if isinstance(statement, ast.AnnAssign)
                               else [])
                    names |= {target.id for target in targets if isinstance(target, ast.Name)}
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
    return names


def _statements(tokens):
    line = []
    for token in tokens:
        if token.type == tokenize.NEWLINE:
            if line:
                yield line
            line = []
        elif token.type not in (tokenize.INDENT, tokenize.DEDENT):
            line.append(token)
    if line:
        yield line


def _dotted(tokens, i: int) -> tuple[str, int]:
    parts = [tokens[i].string]
    i += 1
    while i + 1 < len(tokens) and tokens[i].string == "." and tokens[i + 1].type == tokenize.NAME:
        parts.append(tokens[i + 1].string)
        i += 2
    return ".".join(parts), i


def _is_library(module: str) -> bool:
    return module.split(".")[0] in LIBRARIES or module.startswith(COMPAT_MODULE)


def _imports(statements, path: str) -> tuple[set[str], list[Use]]:
    """Rule 1, and the library roots of rule 2."""
    roots, uses = set(), []
    for code in statements:
        line = code[0].start[0]
        if code[0].string == "import":
            i = 1
            while i < len(code):
                module, i = _dotted(code, i)
                bound = module.split(".")[0]
                if i < len(code) and code[i].string == "as":
                    bound, i = code[i + 1].string, i + 2
                if _is_library(module):
                    roots.add(bound)
                    if any(_private(part) for part in module.split(".")):
                        uses.append(Use(path, line, 1, module))
                i += 1  # the comma
        elif code[0].string == "from" and code[1].type == tokenize.NAME:
            module, i = _dotted(code, 1)
            if not _is_library(module):
                continue
            if any(_private(part) for part in module.split(".")):
                uses.append(Use(path, line, 1, module))
            names = [token.string for token in code[i + 1:] if token.type == tokenize.NAME]
            for j, name in enumerate(names):
                if name == "as" or (j and names[j - 1] == "as"):
                    continue
                bound = names[j + 2] if j + 1 < len(names) and names[j + 1] == "as" else name
                roots.add(bound)
                if _private(name):
                    uses.append(Use(path, line, 1, f"{module}.{name}"))
    for code in statements:  # module-level aliases: _stock = compat_celery.delayed_delivery
        if (code[0].start[1] == 0 and len(code) > 2 and code[0].type == tokenize.NAME
                and code[1].string == "=" and code[2].string in roots):
            roots.add(code[0].string)
    return roots, uses


def _rooted(tokens, roots, path: str) -> list[Use]:
    """Rule 2."""
    uses = []
    for i, token in enumerate(tokens):
        if token.string not in roots or (i and tokens[i - 1].string == "."):
            continue
        j = i
        while (j + 2 < len(tokens) and tokens[j + 1].string == "."
               and tokens[j + 2].type == tokenize.NAME):
            j += 2
            if _private(tokens[j].string):
                uses.append(Use(path, tokens[j].start[0], 2, tokens[j].string))
    return uses


def _library_class(module_name: str, qualname: str) -> bool:
    """Does the class's MRO hold a class of those libraries?  The module is
    imported: a class that cannot be resolved fails the scan, loudly."""
    obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return any(klass.__module__.split(".")[0] in LIBRARIES for klass in obj.__mro__[1:])


def _inherited(tree, tokens, module_name: str, path: str) -> list[Use]:
    """Rule 3."""
    private_names = library_private_names()
    uses = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.ClassDef):
                if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, prefix)
                continue
            qualname = f"{prefix}{child.name}"
            if child.bases and _library_class(module_name, qualname):
                body = [t for t in tokens if child.lineno <= t.start[0] <= child.end_lineno]
                assigned = {body[k + 2].string for k in range(len(body) - 3)
                            if body[k].string in ("self", "cls") and body[k + 1].string == "."
                            and body[k + 3].string in ("=", ":")}
                for k, token in enumerate(body):
                    name = token.string
                    if (token.type != tokenize.NAME or name not in private_names
                            or name in assigned or not _private(name) or k < 2):
                        continue
                    if body[k - 1].string == "def" or (
                            body[k - 1].string == "." and body[k - 2].string in ("self", "cls", ")")):
                        uses.append(Use(path, token.start[0], 3, name))
            visit(child, f"{qualname}.")

    visit(tree, "")
    return uses


def _rebound(statements, project_defines, path: str) -> list[Use]:
    """Rule 4: ``obj.a.name = ...`` at the start of a statement."""
    uses = []
    for code in statements:
        if code[0].type != tokenize.NAME or code[0].string in ("self", "cls"):
            continue
        i = 1
        while i + 1 < len(code) and code[i].string == "." and code[i + 1].type == tokenize.NAME:
            i += 2
        name = code[i - 1].string
        if (i > 1 and i < len(code) and code[i].string == "=" and name in live_amqp_names()
                and name not in project_defines):
            uses.append(Use(path, code[0].start[0], 4, name))
    return uses


def scan_tree(root: Path, packages=SCANNED, *, exclude=COMPAT) -> list[Use]:
    files = [path for package in packages for path in sorted((root / package).rglob("*.py"))
             if path.relative_to(root).parts[:len(exclude)] != exclude]
    sources = {path: path.read_text() for path in files}
    trees = {path: ast.parse(source, filename=str(path)) for path, source in sources.items()}
    project_defines = project_definitions(trees.values())
    uses = []
    for path, source in sources.items():
        relative = path.relative_to(root)
        module_name = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        tokens = code_tokens(source)
        statements = list(_statements(tokens))
        roots, found = _imports(statements, str(relative))
        uses += found
        uses += _rooted(tokens, roots, str(relative))
        uses += _inherited(trees[path], tokens, module_name, str(relative))
        uses += _rebound(statements, project_defines, str(relative))
    return uses


def test_no_private_library_name_is_used_outside_the_compat_modules():
    uses = scan_tree(ROOT)
    assert [str(use) for use in uses] == []


PLANTED = '''
"""from celery._state import get_current_app  (a docstring: not counted)"""
import amqp
from celery._state import get_current_app
from kombu.utils.encoding import _safe_str
from queueworks.dispatch.compat import celery as compat_celery
from celery.worker.consumer.delayed_delivery import DelayedDelivery

_stock = compat_celery.delayed_delivery


def publish(channel, message):
    # channel._basic_publish(message)  (a comment: not counted)
    amqp.Channel._basic_publish(channel, message)
    label = f"connection._transport {message}"


class Step(_stock.DelayedDelivery):
    def _setup_delayed_delivery(self, c, broker_url):
        self._validate_queue_type("quorum")
        return super()._on_retry(None, None, 0)


class Own:
    def _setup_delayed_delivery(self):
        return self._on_retry


def patch(channel, connection):
    channel.basic_ack = print
    connection.client_properties = {}
'''


def test_the_scan_finds_each_kind_of_planted_private_use(tmp_path, monkeypatch):
    package = tmp_path / "planted"
    (package / "dispatch" / "compat").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "uses.py").write_text(PLANTED)
    # The same text inside the compat modules is allowed.
    (package / "dispatch" / "compat" / "amqp.py").write_text(PLANTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    uses = scan_tree(tmp_path, ("planted",), exclude=("planted", "dispatch", "compat"))
    assert sorted((use.line, use.rule, use.name) for use in uses) == [
        (4, 1, "celery._state"),
        (5, 1, "kombu.utils.encoding._safe_str"),
        (14, 2, "_basic_publish"),
        (19, 3, "_setup_delayed_delivery"),
        (20, 3, "_validate_queue_type"),
        (21, 3, "_on_retry"),
        (30, 4, "basic_ack"),
        (31, 4, "client_properties"),
    ]
    assert {use.path for use in uses} == {"planted/uses.py"}
