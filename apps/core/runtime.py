"""The environment supervisor's program files expect (see apps/core/supervisor.py)."""

import os
import sys
from pathlib import Path


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
