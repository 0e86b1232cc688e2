"""Three hosts deployed from the inventory, on the multi-host test bed.

The test bed (deploy/testbed/testbed.sh) gives three network namespaces on a
private link-local network and a 3-node RabbitMQ cluster.  The inventory
(tests/support/host_inventory.py: THREE) declares web-1 (web, beat), worker-1
(main_worker, bulk_worker_1) and worker-2 (heavy_worker, bulk_worker_2), each
program as ``nobody``; the database is a throw-away PostgreSQL database.

Each host's files are rendered with `render_supervisor --host` and
`render_systemd --host`, and its supervisord is started inside its namespace
from the boot unit's ExecStart command line with only the unit's environment
and its EnvironmentFile.  Then: tasks land on the hosts the inventory says,
doctor finds no FAIL on any host, /ops/'s selector shows every host's
programs, and worker-1 stopped (warm shutdown) and started again from its boot
unit loses no task: every token sent is counted once in the database.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.host_inventory import unprivileged_checkout, unprivileged_venv
from tests.support.live import wait_for
from tests.support.requirements import require, require_tool
from tests.support.testbed import free_base_port, free_link_local_net

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TESTBED = PROJECT_ROOT / "deploy" / "testbed" / "testbed.sh"
HOSTS = {"web-1": "h1", "worker-1": "h2", "worker-2": "h3"}
WORKERS = {"worker-1": ["main_worker@worker-1", "bulk_worker_1@worker-1"],
           "worker-2": ["heavy_worker@worker-2", "bulk_worker_2@worker-2"]}
# Small: the scenario proves placement and no loss, not throughput.
MAIN, HEAVY, BULK, OUTAGE = 40, 10, 40, 60
CREDENTIALS = ("ops", secrets.token_hex(12))



def _unit_values(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def _env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line.strip() and not line.startswith("#"))


def _psql(sql: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-q", "-v", "ON_ERROR_STOP=1",
                    "-c", sql], check=True, capture_output=True, text=True, timeout=60)


class Bed:
    def __init__(self, base: Path, checkout: Path):
        self.checkout = checkout  # what the hosts run: /srv/projectname on real ones
        self.tag = f"d{os.getpid() % 10000:04d}"
        self.state = base / f"state-{self.tag}"
        self.net = free_link_local_net()
        self.bridge = f"169.254.{self.net}.1"
        self.base_port = free_base_port()
        self.env = dict(os.environ, TESTBED_TAG=self.tag, TESTBED_STATE=str(self.state),
                        TESTBED_BASE_PORT=str(self.base_port), TESTBED_NET=str(self.net),
                        TESTBED_HOSTS="3")
        self.database = f"tb3_{self.tag}"
        self.db_password = secrets.token_hex(12)
        # The deployment's own broker user on the cluster (never guest):
        # cluster-up creates it with the project's least privilege.
        self.broker_user: tuple[str, str] = ("", "")
        self.supervisords: dict[str, subprocess.Popen] = {}
        self.relay: subprocess.Popen | None = None

    def testbed(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(["bash", str(TESTBED), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def broker_urls(self, address: str) -> str:
        user, password = self.broker_user
        return ";".join(f"pyamqp://{user}:{password}@{address}:{self.base_port + n}//"
                        for n in (1, 2, 3))

    def database_url(self, address: str) -> str:
        return f"postgres://{self.database}:{self.db_password}@{address}:5432/{self.database}"

    def client_env(self) -> dict[str, str]:
        """The operator's shell in the root namespace (loopback to the cluster and PostgreSQL)."""
        environment = {k: v for k, v in _env_file(self.state / "env").items()}
        environment.update(PATH=os.environ["PATH"], HOME=os.environ.get("HOME", "/root"),
                           DJANGO_SETTINGS_MODULE="projectname.settings",
                           CELERY_BROKER_URL=self.broker_urls("127.0.0.1"),
                           DATABASE_URL=self.database_url("127.0.0.1"))
        return environment

    def client(self, *args: str, timeout: float = 180) -> dict:
        done = subprocess.run([sys.executable, "-m", "tests.support.three_hosts_client", *args],
                              cwd=PROJECT_ROOT, env=self.client_env(), capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def namespace(self, host: str) -> str:
        return f"tb-{self.tag}-{HOSTS[host]}"

    def boot_command(self, host: str) -> tuple[list[str], dict[str, str]]:
        """The boot unit's ExecStart and the environment systemd would give it."""
        unit = (self.state / host / "deploy" / "systemd" / "projectname-supervisord.service")
        text = unit.read_text()
        [exec_start] = _unit_values(text, "ExecStart")
        [env_file] = _unit_values(text, "EnvironmentFile")
        environment = dict(pair.split("=", 1) for line in _unit_values(text, "Environment")
                           for pair in shlex.split(line))
        environment.update(_env_file(Path(env_file)))
        return shlex.split(exec_start), environment

    def boot(self, host: str) -> None:
        command, environment = self.boot_command(host)
        assert not {"PROJECT_ROOT", "RUN_DIR", "PATH"} & set(environment)
        self.supervisords[host] = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace(host), "env", "-i",
             *(f"{k}={v}" for k, v in environment.items()), *command],
            cwd="/", stdout=open(self.state / host / "supervisord.out", "ab"),
            stderr=subprocess.STDOUT)

    def shut_down(self, host: str, timeout: float = 150) -> None:
        process = self.supervisords.get(host)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # what systemctl stop sends
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def wait_finished(self, prefix: str, expected: int, timeout: float = 240) -> dict:
        def done():
            counted = self.client("count", prefix)
            return counted if counted["finished"] >= expected else None

        return wait_for(done, timeout, interval=3, message=f"{expected} {prefix} tasks finished")

    def doctor(self, host: str) -> dict:
        _, environment = self.boot_command(host)
        done = subprocess.run(
            ["ip", "netns", "exec", self.namespace(host), "env", "-i",
             *(f"{k}={v}" for k, v in environment.items()), f"PATH={os.environ['PATH']}",
             sys.executable, "manage.py", "doctor", "--json", "--timeout=5", "--host", host,
             "--run-dir", str(self.state / host / "run")],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        assert done.stdout.strip(), done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def bed():
    require_tool("socat", "socat")
    require(shutil.which("runuser") is not None and Path("/usr/bin/psql").exists(),
            "PostgreSQL (psql, runuser) for the three-host database")
    base = Path(tempfile.mkdtemp(prefix="t3-"))
    base.chmod(0o755)
    with unprivileged_checkout() as checkout:
        bed = Bed(base, checkout)
        check = subprocess.run(["bash", str(TESTBED), "check"], env=bed.env, capture_output=True,
                               text=True, timeout=60)
        require(check.returncode != 3, f"the multi-host test bed: {check.stdout.strip()}")
        _psql(f"CREATE ROLE {bed.database} LOGIN PASSWORD '{bed.db_password}'")
        _psql(f"CREATE DATABASE {bed.database} OWNER {bed.database}")
        try:
            yield bed
        finally:
            _tear_down(bed, base)


def _tear_down(bed: Bed, base: Path) -> None:
    for host in list(bed.supervisords):
        bed.shut_down(host, timeout=60)
    if bed.relay is not None:
        bed.relay.kill()
        bed.relay.wait()
    down = subprocess.run(["bash", str(TESTBED), "down"], env=bed.env, capture_output=True,
                          text=True, timeout=180)
    _psql(f"DROP DATABASE IF EXISTS {bed.database} WITH (FORCE)")
    _psql(f"DROP ROLE IF EXISTS {bed.database}")
    shutil.rmtree(base, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr


@pytest.mark.integration
@pytest.mark.live
@pytest.mark.timeout(1200)
def test_three_hosts_deployed_from_the_inventory(bed):
    bed.testbed("net-up")
    bed.testbed("cluster-up", timeout=400)
    credentials = _env_file(bed.state / "credentials")
    bed.broker_user = (credentials["APP_USER"], credentials["APP_PASSWORD"])
    venv = unprivileged_venv(bed.state / "venv", checkout=bed.checkout)
    require(venv is not None, "a system python of the suite's version for the hosts' venv")
    # PostgreSQL listens on loopback: relayed to the bridge for the namespaces.
    bed.relay = subprocess.Popen(["socat", f"TCP-LISTEN:5432,bind={bed.bridge},fork,reuseaddr",
                                  "TCP:127.0.0.1:5432"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    # The env file every host shares (/etc/projectname/env on real hosts).
    (bed.state / "env").write_text("\n".join([
        "DJANGO_PROFILE=development", "DJANGO_DEBUG=0", "DJANGO_TEST_SUPPORT=1",
        f"DJANGO_SECRET_KEY={secrets.token_hex(32)}",
        f"DATABASE_URL={bed.database_url(bed.bridge)}",
        f"CELERY_BROKER_URL={bed.broker_urls(bed.bridge)}",
        "CELERY_BROKER_HEARTBEAT=10", "TASK_QUEUE_TYPE=quorum",
        "DEPLOY_INVENTORY=tests.support.host_inventory:THREE",
        f"TB3_STATE={bed.state}", f"TB3_NET={bed.net}", f"TB3_VENV={venv}",
        f"TB3_PROJECT={bed.checkout}",
        f"SUPERVISOR_USERNAME={CREDENTIALS[0]}", f"SUPERVISOR_PASSWORD={CREDENTIALS[1]}",
        f"FLOWER_BASIC_AUTH=ops:{secrets.token_hex(12)}",
        f"RABBITMQ_MANAGEMENT_URL=http://{bed.bridge}:1",
    ]) + "\n")
    operator = bed.client_env()
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"],
                             cwd=PROJECT_ROOT, env=operator, capture_output=True, text=True,
                             timeout=300)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr

    nobody = pwd.getpwnam("nobody")
    for host in HOSTS:
        deploy = bed.state / host / "deploy"
        run = bed.state / host / "run"
        (run / "log").mkdir(parents=True)
        os.chown(run, nobody.pw_uid, nobody.pw_gid)
        for args in (["render_supervisor", "--host", host, "--deploy-dir", str(deploy)],
                     ["render_systemd", "--host", host, "--output-dir", str(deploy / "systemd"),
                      "--supervisor-conf", str(deploy / "supervisord.conf")]):
            done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT,
                                  env=operator, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
        bed.boot(host)

    # /ops/'s selector, from the operator's namespace, over each host's HTTP interface.
    # The alerts program runs where beat runs, without being listed there.
    expected_programs = {f"{h}:{p}" for h, ps in (("web-1", ("web", "beat", "alerts")),
                                                   ("worker-1", ("main_worker", "bulk_worker_1")),
                                                   ("worker-2", ("heavy_worker", "bulk_worker_2")))
                         for p in ps}
    states = wait_for(lambda: (s := bed.client("programs")) and set(s) == expected_programs
                      and all(v == "RUNNING" for v in s.values()) and s, 300, interval=3,
                      message="every host's programs RUNNING (/ops/ selector)")

    # Tasks go where the inventory puts their queue's programs.
    for prefix, count, queue in (("main", MAIN, "main_worker"), ("heavy", HEAVY, "heavy"),
                                 ("bulk", BULK, "bulk")):
        bed.client("publish", prefix, str(count), queue)
    main = bed.wait_finished("main", MAIN)
    heavy = bed.wait_finished("heavy", HEAVY)
    bulk = bed.wait_finished("bulk", BULK)
    assert main["per_worker"] == {"main_worker@worker-1": MAIN}, main
    assert heavy["per_worker"] == {"heavy_worker@worker-2": HEAVY}, heavy
    assert set(bulk["per_worker"]) <= {"bulk_worker_1@worker-1", "bulk_worker_2@worker-2"}, bulk
    assert sum(bulk["per_worker"].values()) == BULK

    # doctor on every host: its own programs judged, nothing FAILs.
    for host in HOSTS:
        report = wait_for(lambda: (r := bed.doctor(host)) and r["summary"]["FAIL"] == 0 and r,
                          180, interval=10, message=f"doctor on {host} without FAIL")
        findings = {f["check"]: f for f in report["findings"]}
        for program in ("main_worker", "heavy_worker", "web", "beat"):
            ours = program in {"web-1": ("web", "beat"), "worker-1": ("main_worker",),
                               "worker-2": ("heavy_worker",)}[host]
            message = findings[f"program {program}"]["message"]
            assert message.startswith("RUNNING") if ours else "judged by doctor there" in message

    # worker-1 stopped (warm shutdown) with tasks in flight, more sent while
    # it is down, started again from its boot unit: nothing lost.
    bed.client("publish", "outage-a", str(OUTAGE), "main_worker")
    bed.shut_down("worker-1")
    bed.client("publish", "outage-b", str(OUTAGE), "main_worker")
    time.sleep(3)
    during = bed.client("count", "outage-b")
    bed.boot("worker-1")
    first = bed.wait_finished("outage-a", OUTAGE)
    second = bed.wait_finished("outage-b", OUTAGE)
    table = {
        "hosts": sorted(HOSTS), "programs": sorted(states),
        "tasks per worker": {**main["per_worker"], **heavy["per_worker"],
                             **{k: bulk["per_worker"].get(k, 0) for k in bulk["per_worker"]}},
        "outage": {"sent": 2 * OUTAGE, "finished": first["finished"] + second["finished"],
                   "rows": first["rows"] + second["rows"], "ran twice": first["ran_twice"]
                   + second["ran_twice"], "finished while worker-1 was down": during["finished"]},
    }
    print(json.dumps(table, indent=2))
    assert during["finished"] == 0, table  # nobody else consumes main_worker
    assert first["rows"] == first["finished"] == OUTAGE, table
    assert second["rows"] == second["finished"] == OUTAGE, table
    assert first["per_worker"] == {"main_worker@worker-1": OUTAGE}
