"""The environment supervisor's program files expect (see queueworks/core/supervisor.py),
and how a program reads the values rendered into it."""

import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def bounded_int_from_environment(name: str, *, maximum: int, unit: str, otherwise: str) -> int:
    """A whole number 0..maximum from the environment; 0 when unset.  A bad
    value is logged (naming the variable) and read as 0: a program never
    fails to start over an option it can run without."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= maximum:
        logger.error("%s=%r: expected %s 0-%d; %s.", name, raw, unit, maximum, otherwise)
        return 0
    return value


def supervisor_environment(*, project_root: Path, run_dir: Path, **overrides: str) -> dict[str, str]:
    (run_dir / "log").mkdir(parents=True, exist_ok=True)
    interpreter_bin = str(Path(sys.executable).parent)
    environment = {
        "PROJECT_ROOT": str(project_root),
        "RUN_DIR": str(run_dir),
        "WEB_PORT": os.environ.get("WEB_PORT", "8000"),
        "FLOWER_PORT": os.environ.get("FLOWER_PORT", "5555"),
        # Programs run this interpreter's celery/gunicorn/python, whatever venv.
        "PATH": interpreter_bin + os.pathsep + os.environ.get("PATH", ""),
    }
    environment.update(overrides)
    return environment
