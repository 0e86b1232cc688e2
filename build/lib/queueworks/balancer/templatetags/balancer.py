"""``{% balancer_panel %}``: the balancer's latest decisions on /ops/."""

from django import template

from queueworks.balancer.selectors import balance_decisions_recent
from queueworks.conf import TOPOLOGY

register = template.Library()


@register.inclusion_tag("balancer/_panel.html")
def balancer_panel():
    balance = TOPOLOGY.balance
    return {
        "balance": balance,
        "bounds": [(name, *balance.bounds(name)) for name in balance.workers] if balance else [],
        "decisions": balance_decisions_recent(),
    }
