"""The installed-versions check warns when the running Django is outside the
range django-celery-beat declares, through `manage.py check`'s own registry."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import django
import pytest
from django.core import checks

from queueworks.core import checks_versions

MAJOR = django.VERSION[0]
ROOT = Path(__file__).resolve().parents[3]


def _beat_declares(monkeypatch, requirement: str) -> None:
    real = metadata.requires

    def requires(distribution):
        if distribution == "django-celery-beat":
            return ["django-timezone-field>=5.0", requirement]
        return real(distribution)

    monkeypatch.setattr(metadata, "requires", requires)


def _version_warnings() -> list:
    return [m for m in checks.run_checks(tags=[checks.Tags.compatibility])
            if m.id == "queueworks.W001"]


def test_the_installed_pins_pass():
    assert _version_warnings() == []


def test_manage_py_check_warns_when_beat_excludes_the_running_django():
    # In a process of its own: the check must be registered by the app's
    # ready(), not by this module importing it.
    script = (
        "import runpy, sys\n"
        "from importlib import metadata\n"
        "real = metadata.requires\n"
        f"metadata.requires = lambda d: ['Django<{MAJOR}.0'] if d == 'django-celery-beat' "
        "else real(d)\n"
        "sys.argv = ['manage.py', 'check']\n"
        "runpy.run_path('manage.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # A warning: check reports, never refuses.
    assert (f"(queueworks.W001) Django {django.__version__} is outside the range "
            "django-celery-beat") in result.stderr, result.stderr


def test_the_warning_names_both_versions_and_the_range(monkeypatch):
    # A range that ends below the running Django, whichever this pass runs.
    _beat_declares(monkeypatch, f"Django<{MAJOR}.0,>=2.2")
    found = _version_warnings()
    assert len(found) == 1 and found[0].level == checks.WARNING
    beat = metadata.version("django-celery-beat")
    assert found[0].msg == (f"Django {django.__version__} is outside the range "
                            f"django-celery-beat {beat} declares (Django<{MAJOR}.0,>=2.2).")


def test_a_range_that_holds_the_running_django_is_quiet(monkeypatch):
    _beat_declares(monkeypatch, f"Django (>={MAJOR}.0,<{MAJOR + 1}.0)")
    assert _version_warnings() == []
    # A Django requirement of an extra is not installed with beat: no warning.
    _beat_declares(monkeypatch, f'Django<{MAJOR}.0; extra == "old"')
    assert _version_warnings() == []


@pytest.mark.parametrize("specifier", [
    "<6.1,>=2.2", ">=4.2,<6.2", "<6.0", "<=6.0", ">=6.0.10", ">6.0.10", "==6.0.*", "!=6.0.*",
    "~=6.0", "~=5.2.0", "~=6.0.9", "==6.0.10", "==6", "!=5.2.19", ">=5.2,!=6.0.10", "",
])
@pytest.mark.parametrize("version", ["5.2.19", "6.0", "6.0.10", "6.1"])
def test_without_packaging_the_range_reads_the_same(specifier, version):
    from packaging.specifiers import SpecifierSet

    numbers = tuple(int(part) for part in version.split("."))
    expected = SpecifierSet(specifier).contains(version)
    assert all(checks_versions._clause_holds(clause, numbers)
               for clause in specifier.split(",") if clause) == expected


def test_requirement_lines_read_the_same_without_packaging(monkeypatch):
    lines = ["django-timezone-field>=5.0", "Django<6.1,>=2.2", "Django (>=4.2,<6.2)",
             'django>=5.2; extra == "django"', "djangorestframework>=3.10"]
    assert checks_versions.django_specifiers(lines) == ["<6.1,>=2.2", ">=4.2,<6.2"]
    assert checks_versions.version_in("<6.1,>=2.2", (6, 1, 0), "6.1") is False
    # packaging is no runtime dependency: a plain install may lack it.
    for module in ("packaging.requirements", "packaging.specifiers"):
        monkeypatch.setitem(sys.modules, module, None)
    assert checks_versions.django_specifiers(lines) == ["<6.1,>=2.2", ">=4.2,<6.2"]
    assert checks_versions.version_in("<6.1,>=2.2", (6, 0, 10), "6.0.10") is True
    assert checks_versions.version_in("<6.1,>=2.2", (6, 1, 0), "6.1") is False
