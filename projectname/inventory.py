"""Which programs run on which host: the inventory, declared beside the topology.

``INVENTORY = None`` (the default) means one host runs every program, as
``make run`` does.  Declare hosts to deploy to several machines; the classes
and what is derived from them live in ``queueworks/core/inventory.py``, the deploy
steps in docs/deployment.md and docs/walkthrough-three-hosts.md.

After a change: ``python manage.py render_supervisor --host <host>`` and
``python manage.py render_systemd --host <host>`` for every host (``make
render-hosts`` renders them all), then ``apply_topology --host <host>`` on it.
"""

from __future__ import annotations

from queueworks.core.inventory import (  # noqa: F401  (re-exported: import them from here)
    Host,
    Inventory,
    Paths,
    inventory_from_environment,
)

# Three machines on a private network: one web host (web, beat, Flower) and
# two worker hosts, each also a node of the 3-node RabbitMQ cluster.  The
# user-facing lane (main_worker) runs on worker-1, reports (heavy_worker) on
# worker-2, and the bulk lane on both.  To use it: INVENTORY = THREE_HOSTS.
THREE_HOSTS = Inventory(
    hosts=(
        Host("web-1", "10.0.0.11", programs=("web", "beat", "flower"), broker_node=True),
        Host("worker-1", "10.0.0.12", programs=("main_worker", "bulk_worker_1"), broker_node=True),
        Host("worker-2", "10.0.0.13", programs=("heavy_worker", "bulk_worker_2"), broker_node=True),
    ),
    user="projectname",
    paths=Paths(project_root="/srv/projectname", run_dir="/var/lib/projectname",
                env_file="/etc/projectname/env"),
)

# None: this one host runs everything.  $DEPLOY_INVENTORY=module:ATTRIBUTE
# overrides it (e.g. projectname.inventory:THREE_HOSTS).
INVENTORY: Inventory | None = inventory_from_environment(default=None)
