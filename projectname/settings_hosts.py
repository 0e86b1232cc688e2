"""What the host inventory (projectname/inventory.py) decides in the settings:
the broker's cluster URL list, and no database that only one machine has."""

from __future__ import annotations

import sys

from projectname.inventory import INVENTORY  # noqa: F401  (settings.INVENTORY)

SQLITE = "django.db.backends.sqlite3"


def inventory_broker_url(env) -> str:
    """CELERY_BROKER_URL from the inventory's broker nodes, when
    CELERY_BROKER_PASSWORD is set (user: CELERY_BROKER_USER, default projectname)."""
    password = env("CELERY_BROKER_PASSWORD", default="")
    if INVENTORY is None or not INVENTORY.broker_hosts or not password:
        return ""
    return INVENTORY.broker_url(user=env("CELERY_BROKER_USER", default="projectname"),
                                password=password, start_at=env("DEPLOY_HOST", default=None))


def refuse_unshared_database(inventory, database: dict) -> None:
    """Exit with the reason when several machines would each get their own SQLite file."""
    if inventory is None or database["ENGINE"] != SQLITE or not inventory.spans_machines:
        return
    sys.exit(
        f"Refusing to start: the inventory (projectname/inventory.py) declares "
        f"{len(inventory.hosts)} hosts ({', '.join(inventory.host_names())}) and the database "
        "is SQLite, a file on one machine.  Set DATABASE_URL=postgres://user:password@host:5432/"
        "projectname on every host (docs/deployment.md, \"Database\")."
    )
