"""deploy/bin/ensure-system.sh and the Makefile: `make run` installs what running
needs, `make test` adds the test-only parts; both read from the script's plan."""

import os
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT_ROOT / "deploy" / "bin" / "ensure-system.sh"
TEST_ONLY_PACKAGES = ("chromium", "redis-server", "iproute2", "nginx", "postgresql", "socat")


def plan(*options: str, fresh: bool = True) -> str:
    env = {**os.environ, "ENSURE_SYSTEM_PRETEND_FRESH": "1" if fresh else "0"}
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", *options], env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def make_recipe(target: str) -> list[str]:
    result = subprocess.run(["make", "-n", "-B", target], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def ensure_system_calls(target: str) -> list[str]:
    return [line for line in make_recipe(target) if "ensure-system.sh" in line]


def test_make_run_on_a_fresh_machine_installs_no_test_only_package():
    calls = ensure_system_calls("run")
    assert calls == ["bash deploy/bin/ensure-system.sh"]
    text = plan()
    install = next(line for line in text.splitlines() if line.startswith("ensure-system: install "))
    assert install.split()[2:] == ["rabbitmq-server", "python3-venv"]
    for package in TEST_ONLY_PACKAGES:
        assert package not in text
    assert "start RabbitMQ" in text and "enable rabbitmq_management" in text
    assert "Redis" not in text and "PostgreSQL" not in text


def test_make_test_adds_the_test_only_parts():
    calls = ensure_system_calls("test")
    assert calls == ["bash deploy/bin/ensure-system.sh", "bash deploy/bin/ensure-system.sh --test"]
    text = plan("--test")
    for package in TEST_ONLY_PACKAGES:
        assert package in text
    assert "start Redis" in text
    assert "start PostgreSQL" in text
    assert "create the PostgreSQL role queueworks_test and its database" in text
    recipe = "\n".join(make_recipe("test"))
    assert "pip install -q -r requirements-test.txt" in recipe
    assert "pip install -q -r requirements-test.txt" not in "\n".join(make_recipe("run"))


def test_a_machine_already_set_up_gets_an_empty_plan():
    # The suite runs on such a machine: RabbitMQ with its management API is up.
    text = plan("--test", fresh=False)
    assert text.strip() == "ensure-system: dry run: nothing changed"


def test_the_management_plugin_is_not_listed_while_its_port_answers():
    source = SCRIPT.read_text()
    port_check = source.index("if ! port_open 15672")
    assert source.index("rabbitmq-plugins list") > port_check


def test_runtime_requirements_hold_no_test_package():
    runtime = (PROJECT_ROOT / "requirements.txt").read_text().lower()
    for name in ("pytest", "hypothesis", "schemathesis", "playwright"):
        assert f"\n{name}==" not in runtime and not runtime.startswith(f"{name}==")
    test = (PROJECT_ROOT / "requirements-test.txt").read_text()
    assert "-r requirements.txt" in test and "pytest==" in test


def test_an_unknown_option_is_named():
    result = subprocess.run(["bash", str(SCRIPT), "--tset"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "unknown option --tset" in result.stderr


def test_ci_runs_exactly_the_readme_test_command():
    assert "\nmake test\n" in (PROJECT_ROOT / ".ci" / "run").read_text()
