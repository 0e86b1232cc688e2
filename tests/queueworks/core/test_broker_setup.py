"""The development setup keeps working credentials (a rerun, or a second
checkout on the same machine, never resets the shared broker's passwords)."""

from pathlib import Path

from queueworks.core.broker_setup import CREDENTIAL_KEYS, development, read_env_file, write_env_values

PROJECT_ENV = Path(__file__).resolve().parents[3] / ".env"


def test_a_second_checkout_takes_the_machines_credentials(tmp_path):
    working = {key: read_env_file(PROJECT_ENV)[key] for key in CREDENTIAL_KEYS}
    machine = tmp_path / "machine.env"
    write_env_values(machine, working)
    fresh_checkout = tmp_path / ".env"
    fresh_checkout.write_text("DJANGO_PROFILE=development\nCELERY_BROKER_URL=pyamqp://guest:guest@127.0.0.1//\n")

    development(fresh_checkout, machine)

    written = read_env_file(fresh_checkout)
    assert {key: written[key] for key in CREDENTIAL_KEYS} == working
    assert written["DJANGO_PROFILE"] == "development"
    assert fresh_checkout.stat().st_mode & 0o777 == 0o600
    # The project's own .env still works: nothing was reset.
    assert read_env_file(machine) == working
