"""System checks of the host inventory (projectname/inventory.py): every worker
program on some host, exactly one beat, only programs the topology knows."""

from __future__ import annotations

from django.core.checks import Error, Tags, register

from queueworks.core.inventory import Inventory, declared
from queueworks.core.topology import Topology


def check_inventory(inventory: Inventory | None, topology: Topology) -> list[Error]:
    if inventory is None:
        return []
    return [Error(f"Inventory: {problem}.",
                  hint="Fix the hosts' programs in projectname/inventory.py.", id="inventory.E001")
            for problem in inventory.problems(topology)]


@register(Tags.compatibility, "inventory")
def inventory_check(app_configs=None, **kwargs):
    from queueworks.conf import TOPOLOGY

    return check_inventory(declared(), TOPOLOGY)
