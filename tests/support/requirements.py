"""What a test needs from the machine, checked in one place.

Locally a missing tool or privilege skips the test with the reason.  Under
``CI=true`` it fails instead, naming what is missing: CI installs everything
the suite needs (``make test`` runs deploy/bin/ensure-system.sh), so a skip
there would hide a test that never ran.
"""

from __future__ import annotations

import os
import shutil

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(available: bool, missing: str) -> None:
    """Skip (locally) or fail (CI) unless ``available``; ``missing`` names what is not there."""
    if available:
        return
    if on_ci():
        pytest.fail(f"CI=true and this test cannot run: {missing}", pytrace=False)
    pytest.skip(missing)


def require_tool(name: str, package: str) -> str:
    """The path of executable ``name``; ``package`` is the Debian package that provides it."""
    path = shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{name}", os.X_OK)), None)
    require(path is not None, f"`{name}` is not installed (Debian package {package})")
    return path
