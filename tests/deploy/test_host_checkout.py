"""The deploy tests' hosts run the checkout as ``nobody``, wherever it lies.

A fresh clone in root's home (Debian's /root is 0700) is out of ``nobody``'s
reach, though its own files are not private: the hosts get it through
unprivileged_checkout(), as a real host has its code in /srv/projectname.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.host_inventory import PROJECT_ROOT, unprivileged_checkout, unprivileged_venv
from tests.support.requirements import require

# The Django 6 pass's interpreter lies under root's home, out of nobody's reach.
pytestmark = pytest.mark.system_python


def test_nobody_runs_the_suite_packages_from_the_checkout():
    require(os.geteuid() == 0 and shutil.which("runuser") is not None,
            "root (a bind mount; runuser to run as nobody)")
    base = Path(tempfile.mkdtemp(prefix="hc-"))
    base.chmod(0o755)
    try:
        with unprivileged_checkout() as checkout:
            venv = unprivileged_venv(base / "venv", checkout=checkout)
            require(venv is not None, "a system python of the suite's version")
            done = subprocess.run(
                ["runuser", "-u", "nobody", "--", str(venv / "bin" / "python"), "-c",
                 "import celery, django, supervisor.supervisord, queueworks.core.inventory, "
                 "projectname.topology; print(queueworks.core.inventory.__file__)"],
                cwd=checkout, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip().startswith(str(checkout)), done.stdout
            assert (checkout / "manage.py").samefile(Path(PROJECT_ROOT, "manage.py"))
        assert not checkout.exists()
        assert (Path(PROJECT_ROOT) / "manage.py").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
