"""The Django 6 pass of `make test`: deploy/bin/ensure-python.sh finds or
installs a Python >= 3.12 (stub interpreters and a stub apt stand in for the
machine's), requirements-django6.txt differs from the main pins in Django
only, and the Makefile runs both passes and fails when either fails."""

import os
import re
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT_ROOT / "deploy" / "bin" / "ensure-python.sh"
RUNS = "#!/bin/sh\nexit 0\n"          # an interpreter that passes the script's probe
SHIM = "#!/bin/sh\nexit 127\n"        # a pyenv shim of a version not selected


def _stub(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def _machine(tmp_path, *, offers: dict[str, str] | None = None) -> dict[str, str]:
    """A PATH whose python3.13/python3.12 are shims and whose apt offers
    ``offers`` (package -> candidate version); apt-get logs its calls and
    "installs" a package by putting an interpreter of that name on PATH."""
    bin_dir = tmp_path / "bin"
    for name in ("python3.13", "python3.12"):
        _stub(bin_dir, name, SHIM)
    cases = "".join(f'  {name}) echo "  Candidate: {version}" ;;\n'
                    for name, version in (offers or {}).items())
    _stub(bin_dir, "apt-cache", f'#!/bin/sh\ncase "$2" in\n{cases}'
                                '  *) echo "  Candidate: (none)" ;;\nesac\n')
    _stub(bin_dir, "apt-get", f'#!/bin/sh\necho "$@" >> {tmp_path}/apt.log\n'
                              f'[ "$1" = install ] && printf \'{RUNS}\' > {bin_dir}/$4 '
                              f'&& chmod +x {bin_dir}/$4\nexit 0\n')
    _stub(bin_dir, "sudo", '#!/bin/sh\nexec "$@"\n')
    env = {key: value for key, value in os.environ.items()
           if key not in ("CI", "DJANGO6_PYTHON")}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", PYENV_ROOT=str(tmp_path / "pyenv"))
    return env


def _run(env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_shim_that_does_not_run_is_passed_over_for_pyenvs_newest(tmp_path):
    env = _machine(tmp_path)
    for version in ("3.11.7", "3.12.1", "3.12.10", "3.13.0"):
        _stub(tmp_path / "pyenv" / "versions" / version / "bin", "python",
              SHIM if version == "3.13.0" else RUNS)
    result = _run(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{tmp_path}/pyenv/versions/3.12.10/bin/python"
    assert not (tmp_path / "apt.log").exists()


def test_with_none_here_apt_installs_the_newest_it_offers(tmp_path):
    env = _machine(tmp_path, offers={"python3.12": "3.12.3-1", "python3.13": "3.13.5-2"})
    result = _run(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{tmp_path}/bin/python3.13"
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        "update -qq", "install -y -qq python3.13 python3.13-venv"]


def test_none_installable_fails_under_ci_and_warns_elsewhere(tmp_path):
    env = _machine(tmp_path)
    local = _run(env)
    assert local.returncode == 3 and local.stdout == ""
    assert "WARNING: no Python >= 3.12 for the Django 6 test pass" in local.stderr
    assert "The Django 6 pass is skipped." in local.stderr
    ci = _run({**env, "CI": "true"})
    assert ci.returncode == 1 and ci.stdout == ""
    assert "CI=true and no Python >= 3.12 for the Django 6 test pass" in ci.stderr


def _pins(*names: str) -> dict[str, str]:
    pins = {}
    for name in names:
        for line in (PROJECT_ROOT / name).read_text().splitlines():
            if line.strip() and not line.startswith(("#", "-r")):
                package, _, version = line.partition("==")
                pins[package.strip().lower()] = version.strip()
    return pins


def test_the_django6_pins_are_the_main_ones_but_django():
    main = _pins("requirements.txt", "requirements-test.txt")
    django6 = _pins("requirements-django6.txt")
    assert set(django6) == set(main)
    assert {name: version for name, version in django6.items() if main[name] != version} \
        == {"django": django6["django"]}
    assert re.fullmatch(r"6\.0\.\d+", django6["django"])


def _recipe(target: str) -> str:
    return subprocess.run(["make", "-n", "-B", target], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60, check=True).stdout


def test_make_test_runs_the_django6_pass_after_the_suite_and_fails_with_either():
    recipe = _recipe("test")
    assert "pip install -q -r requirements-django6.txt" in recipe
    suite = recipe.index(".venv/bin/python -m pytest ;")
    rabbitmq4 = recipe.index("QUEUEWORKS_TEST_BROKER=rabbitmq4 .venv/bin/python -m pytest -m rabbitmq4")
    postgres = recipe.index("QUEUEWORKS_TEST_DATABASE=postgres .venv/bin/python -m pytest -m postgres")
    django6 = recipe.index(".venv-django6/bin/python -m pytest "
                           "-m '(not live or tasks_backend) and not system_python';")
    assert suite < rabbitmq4 < postgres < django6
    assert ("for status in $suite $rabbitmq4 $postgres $django6; do [ $status -ne 0 ] "
            "&& exit $status") in recipe
    # A failing pass does not stop the next: no `&&` chains them.
    script = recipe[recipe.index('echo ".venv/bin/python -m pytest'):]
    assert "pytest ; suite=$?;" in script and "rabbitmq4=$?" in script
    assert "postgres=$?" in script and "django6=$?" in script


def test_make_test_runs_every_pass_and_fails_when_any_fails(tmp_path):
    # The real recipe, on stub interpreters that log their call and exit as told
    # (the main virtualenv's interpreter runs the first two passes).
    def make_test(suite: int, rabbitmq4: int, postgres: int,
                  django6: int) -> tuple[int, list[str]]:
        log = tmp_path / f"passes-{suite}-{rabbitmq4}-{postgres}-{django6}.log"
        main = (f'#!/bin/sh\nif [ -n "$QUEUEWORKS_TEST_BROKER" ]; then echo rabbitmq4 >> {log}; '
                f'exit {rabbitmq4}; fi\n'
                f'if [ -n "$QUEUEWORKS_TEST_DATABASE" ]; then echo postgres >> {log}; '
                f'exit {postgres}; fi\necho main >> {log}\nexit {suite}\n')
        _stub(tmp_path / "main" / "bin", "python", main)
        _stub(tmp_path / "django6" / "bin", "python",
              f'#!/bin/sh\necho django6 >> {log}\nexit {django6}\n')
        (tmp_path / "django6" / ".installed").touch()
        result = subprocess.run(
            ["make", "--no-print-directory", "test", f"VENV={tmp_path}/main",
             f"VENV_DJANGO6={tmp_path}/django6", "-o", "install-test",
             "-o", f"{tmp_path}/main/.bench-installed", "-o", f"{tmp_path}/django6/.installed"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert (f"the suite exited {suite}, the RabbitMQ 4.x pass {rabbitmq4}, "
                f"the PostgreSQL pass {postgres}, the Django 6 pass {django6}") \
            in result.stdout, result.stdout + result.stderr
        return result.returncode, log.read_text().split()

    passes = ["main", "rabbitmq4", "postgres", "django6"]
    assert make_test(0, 0, 0, 0) == (0, passes)
    for statuses in ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (1, 1, 1, 1)):
        status, ran = make_test(*statuses)
        assert status != 0 and ran == passes, statuses
