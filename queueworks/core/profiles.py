"""The two profiles, and what the production profile refuses at start.

DJANGO_PROFILE=development is what `make run` gives (.env.example): DEBUG on,
local example credentials.  DJANGO_PROFILE=production (also what an unset
DJANGO_PROFILE means) refuses to start any process that loads the settings
(web, workers, beat, Flower, every manage.py command) while a development
default survives.  The refusal names each setting at fault and exits
non-zero: no traceback, nothing half-started.

Kept free of Django imports: the settings module calls it while loading.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

DEVELOPMENT = "development"
PRODUCTION = "production"
PROFILES = (DEVELOPMENT, PRODUCTION)

# Django's own minimum for a SECRET_KEY that `check --deploy` accepts.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
PASSWORD_MIN_LENGTH = 12

# Values that appear in .env.example, the docs or common tutorials: public,
# so never a secret.
EXAMPLE_SECRET_KEYS = frozenset({
    "dev-only-insecure-secret-key", "test-only-secret-key", "change-me", "changeme", "secret",
})
EXAMPLE_PASSWORDS = frozenset({
    "", "guest", "change-me", "changeme", "password", "secret", "flower", "admin",
    "<password>", "<pw>", "tasks", "projectname",
})
EXAMPLE_USERS = frozenset({"guest"})


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on", "y")


def _url_credentials(url: str) -> tuple[str, str] | None:
    """(user, password) of one broker/management URL, or None if it has no user part."""
    parts = urlsplit(url.strip())
    if parts.username is None:
        return None
    return unquote(parts.username), unquote(parts.password or "")


def _credential_problems(name: str, user: str, password: str) -> list[str]:
    problems = []
    if user in EXAMPLE_USERS:
        problems.append(f"{name}: the user is '{user}' (RabbitMQ's default account); "
                        "use the project's own user (deploy/bin/ensure-rabbitmq-user.sh)")
    if password.lower() in EXAMPLE_PASSWORDS:
        problems.append(f"{name}: the password is an example value")
    elif len(password) < PASSWORD_MIN_LENGTH:
        problems.append(f"{name}: the password is shorter than {PASSWORD_MIN_LENGTH} characters")
    return problems


def broker_url_problems(name: str, url: str) -> list[str]:
    problems: list[str] = []
    for node_url in filter(None, (part.strip() for part in url.split(";"))):
        if node_url.startswith(("redis://", "rediss://", "redis+socket://")):
            credentials = _url_credentials(node_url)
            if credentials is None or not credentials[1]:
                problems.append(f"{name}: the Redis URL has no password")
            continue
        credentials = _url_credentials(node_url)
        if credentials is None:
            problems.append(f"{name}: no user and password (RabbitMQ would use 'guest')")
            continue
        problems += _credential_problems(name, *credentials)
    return sorted(set(problems), key=problems.index)


def flower_auth_problems(value: str) -> list[str]:
    pairs = [pair for pair in (value or "").split(",") if pair.strip()]
    if not pairs:
        return ["FLOWER_BASIC_AUTH is not set (expected user:password[,user:password])"]
    problems = []
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user:
            problems.append("FLOWER_BASIC_AUTH: an entry is not user:password")
        elif password.lower() in EXAMPLE_PASSWORDS or pair == "flower:change-me":
            problems.append(f"FLOWER_BASIC_AUTH: the password of '{user}' is an example value")
        elif len(password) < PASSWORD_MIN_LENGTH:
            problems.append(f"FLOWER_BASIC_AUTH: the password of '{user}' is shorter than "
                            f"{PASSWORD_MIN_LENGTH} characters")
    return problems


def production_problems(*, debug: bool, secret_key: str, allowed_hosts: Iterable[str],
                        broker_url: str, environ: Mapping[str, str]) -> list[str]:
    """Every development default still present, each naming its setting."""
    problems: list[str] = []
    if debug:
        problems.append("DJANGO_DEBUG is on (it shows settings and tracebacks to visitors)")
    if not secret_key:
        problems.append("DJANGO_SECRET_KEY is not set")
    elif secret_key in EXAMPLE_SECRET_KEYS or secret_key.startswith(("django-insecure", "dev-")):
        problems.append("DJANGO_SECRET_KEY is an example value (it is public)")
    elif (len(secret_key) < SECRET_KEY_MIN_LENGTH
          or len(set(secret_key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS):
        problems.append(f"DJANGO_SECRET_KEY is shorter than {SECRET_KEY_MIN_LENGTH} characters "
                        f"or has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct ones")
    hosts = [host.strip() for host in allowed_hosts if host.strip()]
    if not hosts:
        problems.append("DJANGO_ALLOWED_HOSTS is not set (the host names the site answers to)")
    elif any("*" in host for host in hosts):
        problems.append("DJANGO_ALLOWED_HOSTS contains a wildcard '*'")
    if not broker_url:
        problems.append("CELERY_BROKER_URL is not set")
    else:
        problems += broker_url_problems("CELERY_BROKER_URL", broker_url)
    management_user = environ.get("RABBITMQ_MANAGEMENT_USER", "")
    if management_user:
        problems += _credential_problems(
            "RABBITMQ_MANAGEMENT_USER/PASSWORD", management_user,
            environ.get("RABBITMQ_MANAGEMENT_PASSWORD", ""))
    problems += flower_auth_problems(environ.get("FLOWER_BASIC_AUTH", ""))
    if _truthy(environ.get("DJANGO_TEST_SUPPORT")):
        problems.append("DJANGO_TEST_SUPPORT is on (it installs the fault-injection and "
                        "benchmark tasks, apps/testing)")
    if _truthy(environ.get("CELERY_EAGER")):
        problems.append("CELERY_EAGER is on (tasks would run inside web requests)")
    return problems


def refusal_message(profile_note: str, problems: list[str]) -> str:
    lines = [f"Refusing to start: {profile_note}, and these settings keep a development "
             "default or are unsafe:"]
    lines += [f"  - {problem}" for problem in problems]
    lines.append("Set them in the environment (systemd: /etc/<project>/env); see "
                 "docs/production.md.  A developer's machine sets DJANGO_PROFILE=development "
                 "(.env.example).")
    return "\n".join(lines)


def enforce(*, profile: str, profile_was_set: bool, problems: list[str]) -> None:
    """Exit the process with the refusal when the production profile has problems."""
    if profile not in PROFILES:
        sys.exit(f"Refusing to start: DJANGO_PROFILE must be one of {', '.join(PROFILES)}, "
                 f"not {profile!r}.")
    if profile == PRODUCTION and problems:
        note = ("DJANGO_PROFILE=production" if profile_was_set
                else "DJANGO_PROFILE is not set, which means production")
        sys.exit(refusal_message(note, problems))
