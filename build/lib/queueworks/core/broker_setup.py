"""Create the project's RabbitMQ vhost and users, idempotently.

Run by deploy/bin/ensure-rabbitmq-user.sh (``make install``):

* development (default): on the local broker, a test administrator
  (``projectname-test-admin``, made with ``rabbitmqctl``: the test suite
  creates its throw-away vhosts with it), the ``projectname`` vhost, the
  project's least-privilege user and the monitoring user.  Passwords are
  generated once and written to ``.env``; a rerun keeps working values.
  The broker is the machine's, shared by every checkout on it, so the
  generated credentials are also kept in one file per machine
  (``MACHINE_CREDENTIALS``, mode 600): a second checkout takes them from
  there instead of resetting the passwords the first one uses.
* ``--production``: the operator gives every credential in the environment
  (CELERY_BROKER_URL names the project's user, password and vhost;
  RABBITMQ_MANAGEMENT_USER/PASSWORD the monitoring user;
  RABBITMQ_ADMIN_USER/PASSWORD a broker administrator for this run only).
  Nothing is generated or written, no test administrator is made.

Permissions come from queueworks/core/broker_access.py.  No Django here.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import amqp
import requests

from queueworks.core.broker_access import (
    APP_USER, MONITOR_PERMISSIONS, MONITOR_USER, TEST_ADMIN_USER, VHOST, project_permissions,
)

# The project being set up: the directory the command runs in.
PROJECT_ROOT = Path.cwd()
AMQP_HOSTPORT = "127.0.0.1:5672"
# One machine, one broker: every checkout of the project gets the same
# development credentials in its .env (one file per project name).
MACHINE_CREDENTIALS = Path(os.environ.get(
    "PROJECTNAME_RABBITMQ_CREDENTIALS", f"~/.config/{APP_USER}/rabbitmq-development.env",
)).expanduser()
CREDENTIAL_KEYS = ("CELERY_BROKER_URL", "RABBITMQ_MANAGEMENT_USER", "RABBITMQ_MANAGEMENT_PASSWORD",
                   "RABBITMQ_ADMIN_USER", "RABBITMQ_ADMIN_PASSWORD")


class SetupError(Exception):
    """A clear, operator-facing reason the setup cannot continue."""


# -- .env -------------------------------------------------------------------------
def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    return values


def write_env_values(path: Path, updates: dict[str, str]) -> None:
    """Replace each key's line (or append it), leaving every other line alone."""
    lines = path.read_text().splitlines() if path.exists() else []
    pending = dict(updates)
    for index, line in enumerate(lines):
        key = line.partition("=")[0].strip()
        if "=" in line and not key.startswith("#") and key in pending:
            lines[index] = f"{key}={pending.pop(key)}"
    if pending:
        lines += ["", "# Written by deploy/bin/ensure-rabbitmq-user.sh (development credentials)."]
        lines += [f"{key}={value}" for key, value in pending.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def new_password() -> str:
    return secrets.token_urlsafe(24)


# -- RabbitMQ ---------------------------------------------------------------------
class Management:
    def __init__(self, url: str, user: str, password: str):
        self.url, self.auth = url.rstrip("/"), (user, password)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, f"{self.url}/api/{path}", auth=self.auth, timeout=10,
                                    **kwargs)
        if response.status_code >= 400:
            raise SetupError(f"RabbitMQ management API {method} /api/{path}: "
                             f"{response.status_code} {response.text[:200]}")
        return response

    def ensure_user(self, user: str, password: str, tags: str) -> None:
        self.call("PUT", f"users/{quote(user, safe='')}", json={"password": password, "tags": tags})

    def ensure_vhost(self, vhost: str) -> None:
        self.call("PUT", f"vhosts/{quote(vhost, safe='')}")

    def grant(self, vhost: str, user: str, permissions: dict[str, str]) -> None:
        self.call("PUT", f"permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
                  json=permissions)


def management_login_works(url: str, user: str, password: str, tag: str) -> bool:
    if not password:
        return False
    try:
        response = requests.get(f"{url.rstrip('/')}/api/whoami", auth=(user, password), timeout=10)
    except requests.RequestException:
        return False
    return response.status_code == 200 and tag in response.json().get("tags", [])


def amqp_login_works(hostport: str, user: str, password: str, vhost: str) -> bool:
    if not password:
        return False
    connection = amqp.Connection(host=hostport, userid=user, password=password,
                                 virtual_host=vhost, connect_timeout=5)
    try:
        connection.connect()
        return True
    except Exception:  # noqa: BLE001  (any refusal means: set the password)
        return False
    finally:
        try:
            connection.close()
        except Exception:  # noqa: BLE001
            pass


def rabbitmqctl(*args: str, stdin: str | None = None) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    result = subprocess.run([*prefix, "rabbitmqctl", *args], input=stdin, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise SetupError(f"rabbitmqctl {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def ensure_local_admin(url: str, password: str) -> None:
    """The test administrator, through rabbitmqctl on the local node (never guest)."""
    if management_login_works(url, TEST_ADMIN_USER, password, "administrator"):
        return
    # The password goes on stdin, never on a command line `ps` could show.
    try:
        rabbitmqctl("add_user", TEST_ADMIN_USER, stdin=password + "\n")
    except SetupError as error:
        if "already exists" not in str(error):
            raise
        rabbitmqctl("change_password", TEST_ADMIN_USER, stdin=password + "\n")
    rabbitmqctl("set_user_tags", TEST_ADMIN_USER, "administrator")


def broker_url(user: str, password: str, hostport: str, vhost: str) -> str:
    return f"pyamqp://{quote(user, safe='')}:{quote(password, safe='')}@{hostport}/{quote(vhost, safe='')}"


def ensure(*, management: Management, management_url: str, hostport: str, vhost: str,
           app_user: str, app_password: str, monitor_password: str) -> None:
    management.ensure_vhost(vhost)
    if not amqp_login_works(hostport, app_user, app_password, vhost):
        management.ensure_user(app_user, app_password, tags="")
    management.grant(vhost, app_user, project_permissions().as_json())
    if not management_login_works(management_url, MONITOR_USER, monitor_password, "monitoring"):
        management.ensure_user(MONITOR_USER, monitor_password, tags="monitoring")
    management.grant(vhost, MONITOR_USER, MONITOR_PERMISSIONS.as_json())


def development(env_file: Path, machine_file: Path = MACHINE_CREDENTIALS) -> None:
    # The machine's credentials first: they are what the shared broker has.
    current = {**read_env_file(env_file), **{k: v for k, v in os.environ.items() if k.startswith(
        ("RABBITMQ_", "CELERY_BROKER_URL"))}, **{k: v for k, v in read_env_file(machine_file).items() if k in CREDENTIAL_KEYS}}
    management_url = current.get("RABBITMQ_MANAGEMENT_URL") or "http://127.0.0.1:15672"
    admin_password = current.get("RABBITMQ_ADMIN_PASSWORD") or new_password()
    ensure_local_admin(management_url, admin_password)

    existing = urlsplit(current.get("CELERY_BROKER_URL", "").split(";")[0])
    keep = existing.username == APP_USER and existing.password
    app_password = unquote(existing.password) if keep else new_password()
    hostport = existing.netloc.rpartition("@")[2] if keep else AMQP_HOSTPORT
    vhost = unquote(existing.path.lstrip("/")) if keep and existing.path.strip("/") else VHOST
    monitor_password = (current.get("RABBITMQ_MANAGEMENT_PASSWORD")
                        if current.get("RABBITMQ_MANAGEMENT_USER") == MONITOR_USER else "") or new_password()
    ensure(management=Management(management_url, TEST_ADMIN_USER, admin_password),
           management_url=management_url, hostport=hostport, vhost=vhost, app_user=APP_USER,
           app_password=app_password, monitor_password=monitor_password)
    credentials = {
        "CELERY_BROKER_URL": broker_url(APP_USER, app_password, hostport, vhost),
        "RABBITMQ_MANAGEMENT_USER": MONITOR_USER,
        "RABBITMQ_MANAGEMENT_PASSWORD": monitor_password,
        "RABBITMQ_ADMIN_USER": TEST_ADMIN_USER,
        "RABBITMQ_ADMIN_PASSWORD": admin_password,
    }
    machine_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_env_values(machine_file, credentials)
    write_env_values(env_file, credentials)
    print(f"ensure-rabbitmq-user: vhost '{vhost}', users '{APP_USER}' (project), "
          f"'{MONITOR_USER}' (monitoring), '{TEST_ADMIN_USER}' (tests); credentials in {env_file} "
          f"and {machine_file}")


def production() -> None:
    def required(name: str) -> str:
        value = os.environ.get(name, "")
        if not value:
            raise SetupError(f"{name} is not set: production credentials come from the operator.")
        return value

    url = urlsplit(required("CELERY_BROKER_URL").split(";")[0])
    if not url.username or not url.password or url.username == "guest":
        raise SetupError("CELERY_BROKER_URL must name the project's own user and its password.")
    if required("RABBITMQ_MANAGEMENT_USER") == "guest":
        raise SetupError("RABBITMQ_MANAGEMENT_USER must not be guest.")
    management_url = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
    management = Management(management_url, required("RABBITMQ_ADMIN_USER"),
                            required("RABBITMQ_ADMIN_PASSWORD"))
    vhost = unquote(url.path.lstrip("/")) or VHOST
    management.ensure_vhost(vhost)
    management.ensure_user(unquote(url.username), unquote(url.password), tags="")
    management.grant(vhost, unquote(url.username), project_permissions().as_json())
    monitor = required("RABBITMQ_MANAGEMENT_USER")
    management.ensure_user(monitor, required("RABBITMQ_MANAGEMENT_PASSWORD"), tags="monitoring")
    management.grant(vhost, monitor, MONITOR_PERMISSIONS.as_json())
    print(f"ensure-rabbitmq-user: vhost '{vhost}', users '{unquote(url.username)}' (project), "
          f"'{monitor}' (monitoring)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--production", action="store_true",
                        help="use the operator's credentials from the environment; write nothing")
    parser.add_argument("--env-file", type=Path, default=PROJECT_ROOT / ".env")
    parser.add_argument("--machine-file", type=Path, default=MACHINE_CREDENTIALS,
                        help="development credentials shared by the checkouts on this machine")
    args = parser.parse_args(argv)
    try:
        production() if args.production else development(args.env_file, args.machine_file)
    except (SetupError, requests.RequestException) as error:
        print(f"ensure-rabbitmq-user: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
