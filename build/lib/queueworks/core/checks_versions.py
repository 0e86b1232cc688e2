"""A system check of the installed versions: django-celery-beat declares the
Django releases it supports (``Django<6.1,>=2.2`` for 2.9), yet a Django
upgraded on its own (``pip install -U Django``) is installed anyway, with a
resolver message that is easy to miss.  Beat's scheduler and admin would then
run on a Django it was never tested with, so ``manage.py check`` (and every
command that runs the checks) warns before anything starts."""

from __future__ import annotations

import re
from importlib import metadata

import django
from django.core.checks import Tags, Warning, register

# The distributions whose declared Django range the installed Django must be
# in: django-celery-beat caps the Django release it accepts.
DISTRIBUTIONS = ("django-celery-beat",)

# 'Django<6.1,>=2.2', 'Django (>=4.2,<6.2)', 'django>=5.2; extra == "x"':
# name, [extras], specifiers (parenthesised in older metadata), marker.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?"
                          r"\s*\(?([^;()]*)\)?\s*(?:;(.*))?$")
_CLAUSE = re.compile(r"^(~=|===|==|!=|<=|>=|<|>)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?$")


def django_specifiers(requirements: list[str] | None) -> list[str]:
    """The version specifiers of every unconditional Django requirement among
    ``requirements`` (``metadata.requires()`` strings), e.g. ['<6.1,>=2.2']."""
    found = []
    for line in requirements or ():
        match = _REQUIREMENT.match(line)
        if not match or match.group(1).lower() != "django":
            continue
        marker = (match.group(3) or "").strip()
        if marker and not _marker_applies(line):
            continue
        found.append(match.group(2).strip())
    return found


def _marker_applies(line: str) -> bool:
    """A requirement with an environment marker: it applies unless it belongs
    to an extra (``; extra == "x"``), which a plain install does not pull in."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return "extra" not in line.partition(";")[2]
    marker = Requirement(line).marker
    return marker is None or marker.evaluate({"extra": ""})


def version_in(specifier: str, version: tuple[int, ...], text: str) -> bool:
    """Whether the release ``version`` (``text`` spelt out, e.g. '6.0.10')
    satisfies ``specifier`` ('<6.1,>=2.2'); with packaging when it is
    installed (it is no runtime dependency), else by the same rules for the
    plain release numbers that Django requirements use."""
    if not specifier.strip():
        return True
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return all(_clause_holds(clause.strip(), version)
                   for clause in specifier.split(",") if clause.strip())
    try:
        return SpecifierSet(specifier).contains(Version(text), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True  # Unreadable: not a reason to warn.


def _clause_holds(clause: str, version: tuple[int, ...]) -> bool:
    match = _CLAUSE.match(clause)
    if not match:
        return True  # Unreadable without packaging: not a reason to warn.
    operator, number, wildcard = match.groups()
    bound = tuple(int(part) for part in number.split("."))
    if wildcard or operator == "~=":
        prefix = bound if wildcard else bound[:-1]
        matches_prefix = version[:len(prefix)] == prefix
        if operator == "~=":
            return matches_prefix and _padded(version, bound) >= _padded(bound, version)
        return matches_prefix if operator == "==" else not matches_prefix
    left, right = _padded(version, bound), _padded(bound, version)
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right,
            "==": left == right, "===": left == right, "!=": left != right}[operator]


def _padded(numbers: tuple[int, ...], other: tuple[int, ...]) -> tuple[int, ...]:
    return numbers + (0,) * (len(other) - len(numbers))


def running_django() -> tuple[tuple[int, ...], str]:
    """The running Django's release numbers and version string."""
    return tuple(django.VERSION[:3]), django.__version__


def django_range_warnings(distributions=DISTRIBUTIONS) -> list[Warning]:
    version, text = running_django()
    warnings = []
    for distribution in distributions:
        try:
            requirements = metadata.requires(distribution)
            installed = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        for specifier in django_specifiers(requirements):
            if not version_in(specifier, version, text):
                warnings.append(Warning(
                    f"Django {text} is outside the range {distribution} {installed} declares "
                    f"(Django{specifier}).",
                    hint=f"Install a Django within Django{specifier}, or a {distribution} "
                         f"release that declares Django {text}: {distribution} is not "
                         "tested on this Django.",
                    id="queueworks.W001"))
    return warnings


@register(Tags.compatibility)
def check_django_version_range(app_configs=None, **kwargs):
    return django_range_warnings()
