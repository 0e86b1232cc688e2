"""Inventories for the deploy tests, built from the environment the test sets
(DEPLOY_INVENTORY=tests.support.host_inventory:BOOT names one in a subprocess).

BOOT: host boot-1 on loopback running main_worker as ``nobody``, its
checkout, run directory and env file where the test puts them
(HOST_TEST_PROJECT: unprivileged_checkout(), HOST_TEST_RUN_DIR,
HOST_TEST_ENV_FILE), supervisord's HTTP interface on HOST_TEST_SUPERVISOR_PORT;
host idle-1 holds every other program and is never started (its interface,
HOST_TEST_IDLE_PORT, does not answer).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from queueworks.core.inventory import Host, Inventory, Paths

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def _boot() -> Inventory | None:
    if "HOST_TEST_RUN_DIR" not in os.environ:
        return None
    return Inventory(
        hosts=(Host("boot-1", "127.0.0.1", programs=("main_worker",),
                    supervisor_port=int(os.environ["HOST_TEST_SUPERVISOR_PORT"])),
               Host("idle-1", "127.0.0.1", programs=(
                   "web", "beat", "flower", "heavy_worker", "bulk_worker_1", "bulk_worker_2"),
                   supervisor_port=int(os.environ["HOST_TEST_IDLE_PORT"]))),
        user="nobody",
        paths=Paths(project_root=os.environ["HOST_TEST_PROJECT"],
                    run_dir=os.environ["HOST_TEST_RUN_DIR"],
                    env_file=os.environ["HOST_TEST_ENV_FILE"],
                    venv=os.environ.get("HOST_TEST_VENV", "")),
    )


BOOT = _boot()


@contextmanager
def unprivileged_checkout() -> Iterator[Path]:
    """This checkout where an unprivileged program user can read it.

    A clone in root's home (Debian's /root is 0700) is out of ``nobody``'s
    reach though its own files are readable: a bind mount on a fresh 0755
    directory shows the same tree without the private directory above it, as
    a host's /srv/projectname would.  Unmounted when the block ends; the mount
    point is only ever removed empty, so no cleanup can reach the checkout.
    """
    mount_point = Path(tempfile.mkdtemp(prefix="checkout-"))
    mount_point.chmod(0o755)
    subprocess.run(["mount", "--bind", PROJECT_ROOT, str(mount_point)], check=True,
                   capture_output=True, text=True, timeout=60)
    try:
        yield mount_point
    finally:
        # Lazy: a program that outlived its test keeps its files, the path goes now.
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True, capture_output=True,
                       text=True, timeout=60)
        mount_point.rmdir()


def unprivileged_venv(dest: Path, checkout: Path | None = None) -> Path | None:
    """A virtualenv an unprivileged user can run, with this suite's packages.

    The suite's own venv may sit on an interpreter in a private home
    directory (pyenv under /root); a program running as ``nobody`` could not
    execute it.  This builds one on the system's python3 of the same version
    and points it at the suite's site-packages, through ``checkout``
    (unprivileged_checkout()) when they lie in this checkout.  None: no such
    interpreter.
    """
    import sys
    import sysconfig

    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system_python.exists():
        return None
    subprocess.run([str(system_python), "-m", "venv", "--without-pip", str(dest)], check=True,
                   capture_output=True, timeout=120)
    purelib = sysconfig.get_paths()["purelib"]
    if checkout is not None and Path(purelib).resolve().is_relative_to(PROJECT_ROOT):
        purelib = str(checkout / Path(purelib).resolve().relative_to(PROJECT_ROOT))
    [site] = list((dest / "lib").glob("python3*/site-packages"))
    (site / "suite.pth").write_text(purelib + "\n")
    for name, module, function in (("celery", "celery.__main__", "main"),
                                   ("supervisord", "supervisor.supervisord", "main"),
                                   ("supervisorctl", "supervisor.supervisorctl", "main"),
                                   ("gunicorn", "gunicorn.app.wsgiapp", "run")):
        script = dest / "bin" / name
        script.write_text(f"#!{dest}/bin/python\nimport sys\nfrom {module} import {function}\n"
                          f"sys.exit({function}())\n")
        script.chmod(0o755)
    return dest


# SPLIT: the live test system's programs declared on two hosts, main_worker
# on "there", everything else on "here" (both are this machine's supervisord).
SPLIT = Inventory(hosts=(
    Host("here", "127.0.0.1", programs=("web", "beat", "flower", "heavy_worker",
                                        "bulk_worker_1", "bulk_worker_2")),
    Host("there", "127.0.0.2", programs=("main_worker",)),
))


def _three() -> Inventory | None:
    """THREE: the multi-host test bed's three namespaces as web-1 (h1),
    worker-1 (h2) and worker-2 (h3), each with its own run directory under
    TB3_STATE (real hosts each have their own /var/lib/projectname), all on
    the checkout at TB3_PROJECT (unprivileged_checkout())."""
    if "TB3_STATE" not in os.environ:
        return None
    net, state = os.environ["TB3_NET"], os.environ["TB3_STATE"]

    def paths(host: str) -> Paths:
        return Paths(project_root=os.environ["TB3_PROJECT"], run_dir=f"{state}/{host}/run",
                     env_file=f"{state}/env", venv=os.environ["TB3_VENV"])

    return Inventory(
        hosts=(
            Host("web-1", f"169.254.{net}.11", programs=("web", "beat"), paths=paths("web-1")),
            Host("worker-1", f"169.254.{net}.12", programs=("main_worker", "bulk_worker_1"),
                 paths=paths("worker-1")),
            Host("worker-2", f"169.254.{net}.13", programs=("heavy_worker", "bulk_worker_2"),
                 paths=paths("worker-2")),
        ),
        user="nobody", paths=paths("web-1"),
    )


THREE = _three()
