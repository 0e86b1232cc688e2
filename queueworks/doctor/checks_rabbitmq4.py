"""Doctor: what in the broker's vhost would break on RabbitMQ 4.x.

Run before an upgrade (docs/upgrade-rabbitmq-4.md), it reads the management
API with the monitoring user and names:

- transient non-exclusive queues: RabbitMQ 4.3 refuses to declare them;
- channels with global QoS: 4.x applies the prefetch per consumer instead
  (4.3 denies global QoS by default); the project's own Celery workers are
  fine from kombu 5.7, which switches to per-consumer prefetch on 4.x;
- mirrored-queue policies (``ha-*`` keys): classic mirroring is gone in 4.0;
- quorum queues with no dead-letter target: 4.0 gives them a delivery limit
  of 20 and then drops the message;
- the dead-letter queue as a quorum queue without a limit of its own: reading
  a dead letter without removing it (/ops/, ``dead_letters list``) counts as
  a delivery, so the default 20 would drop it after twenty looks.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from queueworks.core.topology import DEAD_LETTER_DELIVERY_LIMIT, DEAD_LETTER_QUEUE
from queueworks.doctor.findings import OK, WARN, Context, Finding

UPGRADE_DOC = "docs/upgrade-rabbitmq-4.md"
# kombu switches to per-consumer prefetch on a 4.x broker from this version.
KOMBU_PER_CONSUMER_QOS = (5, 7)


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _dead_letter_target(queue: dict) -> bool:
    policy = queue.get("effective_policy_definition") or {}
    return bool((queue.get("arguments") or {}).get("x-dead-letter-exchange")
                or policy.get("dead-letter-exchange"))


def upgrade_findings(*, queues: list[dict], channels: list[dict], own_users: set[str],
                     kombu_version: tuple[int, ...]) -> list[Finding]:
    """Findings from the management API's queue and channel rows of one vhost;
    ``own_users``: the users the project's own programs connect as."""
    findings = []
    transient = [q["name"] for q in queues
                 if not q.get("durable", True) and not q.get("exclusive", False)]
    findings.append(Finding(
        "4.x: transient queues", WARN if transient else OK,
        f"transient non-exclusive queues {_listed(transient)}: RabbitMQ 4.3 refuses to declare "
        "them (541)" if transient else "no transient non-exclusive queue",
        "declare them durable (or exclusive, for a per-connection reply queue) before upgrading; "
        + UPGRADE_DOC))

    global_qos = [c for c in channels if (c.get("global_prefetch_count") or 0) > 0]
    foreign = sorted({c.get("user", "?") for c in global_qos if c.get("user") not in own_users})
    ours = len(global_qos) - sum(1 for c in global_qos if c.get("user") not in own_users)
    own_ok = tuple(kombu_version[:2]) >= KOMBU_PER_CONSUMER_QOS
    if foreign or (ours and not own_ok):
        users = foreign + (sorted(own_users) if ours and not own_ok else [])
        findings.append(Finding(
            "4.x: global QoS", WARN,
            f"{len(global_qos)} channel(s) of user(s) {_listed(users)} use global QoS: RabbitMQ "
            "4.x applies their prefetch per consumer instead, and 4.3 denies it by default",
            "use per-consumer prefetch (basic.qos global=false) in those clients; upgrade kombu "
            f"to {'.'.join(map(str, KOMBU_PER_CONSUMER_QOS))} or later; " + UPGRADE_DOC))
    else:
        findings.append(Finding(
            "4.x: global QoS", OK,
            f"{ours} channel(s) of the project's workers use global QoS; kombu "
            f"{'.'.join(map(str, kombu_version[:3]))} switches them to per-consumer prefetch "
            "on 4.x" if ours else "no channel uses global QoS"))

    mirrored = [q["name"] for q in queues
                if any(key.startswith("ha-") for key in (q.get("effective_policy_definition") or {}))]
    findings.append(Finding(
        "4.x: mirrored queues", WARN if mirrored else OK,
        f"queues {_listed(mirrored)} are mirrored by an ha-* policy: classic mirrored queues are "
        "gone in RabbitMQ 4.0 (the policy keys are ignored, the queues are no longer replicated)"
        if mirrored else "no ha-* (mirrored-queue) policy applies",
        "replace mirroring with quorum queues (TASK_QUEUE_TYPE=quorum, `manage.py "
        "migrate_queues`) and delete the ha-* policies; " + UPGRADE_DOC))

    undead = [q["name"] for q in queues
              if q.get("type") == "quorum" and q.get("durable", True)
              and not q["name"].startswith("celery_delayed_") and q["name"] != "dead_letter"
              and not _dead_letter_target(q)]
    findings.append(Finding(
        "4.x: dead-letter targets", WARN if undead else OK,
        f"quorum queues {_listed(undead)} have no dead-letter target: RabbitMQ 4.x drops a "
        "message after 20 deliveries" if undead else "every quorum queue has a dead-letter target",
        "declare them with x-dead-letter-exchange and x-delivery-limit (the topology does) and "
        "move them with `manage.py migrate_queues`; " + UPGRADE_DOC))

    findings.append(_dead_letter_queue_limit(
        next((q for q in queues if q["name"] == DEAD_LETTER_QUEUE), None)))
    return findings


def _dead_letter_queue_limit(queue: dict | None) -> Finding:
    check = "4.x: dead-letter queue limit"
    if queue is None or queue.get("type") != "quorum":
        return Finding(check, OK, f"queue {DEAD_LETTER_QUEUE} is not a quorum queue: no "
                                  "delivery limit applies" if queue else
                       f"no queue {DEAD_LETTER_QUEUE} yet (the workers declare it)")
    policy = queue.get("effective_policy_definition") or {}
    limit = (queue.get("arguments") or {}).get("x-delivery-limit", policy.get("delivery-limit"))
    if isinstance(limit, int) and (limit < 0 or limit >= DEAD_LETTER_DELIVERY_LIMIT):
        return Finding(check, OK, f"quorum queue {DEAD_LETTER_QUEUE} has a delivery limit of "
                                  f"{'none' if limit < 0 else limit}: dead letters stay")
    return Finding(
        check, WARN,
        f"quorum queue {DEAD_LETTER_QUEUE} has a delivery limit of "
        f"{limit if limit is not None else 'RabbitMQ 4.x’s default, 20'}: every look at a dead "
        "letter (/ops/, `dead_letters list`) counts as a delivery, and past the limit the "
        "broker drops it for good",
        f"`manage.py migrate_queues` declares it with x-delivery-limit "
        f"{DEAD_LETTER_DELIVERY_LIMIT} (its letters moved aside and back); " + UPGRADE_DOC)


def check_rabbitmq4_readiness(ctx: Context) -> list[Finding]:
    import kombu
    import requests

    from queueworks.core.broker_access import APP_USER
    from queueworks.core.broker_state import management_api
    from queueworks.doctor.broker import is_redis

    if not ctx.broker_ok or is_redis(ctx.broker_url):
        return []
    api = management_api(ctx.broker_url)
    rows = {}
    try:
        for kind, url, columns in (
                ("queues", api.path("queues", api.vhost),
                 "name,durable,exclusive,type,arguments,effective_policy_definition"),
                ("channels", api.path("vhosts", api.vhost, "channels"),
                 "user,global_prefetch_count")):
            response = requests.get(url, params={"columns": columns},
                                    auth=(api.user, api.password), timeout=ctx.timeout)
            response.raise_for_status()
            rows[kind] = response.json()
    except requests.RequestException as error:
        return [Finding("4.x readiness", WARN, f"management API unreadable: {type(error).__name__}",
                        "see the `management` finding")]
    # The project's least-privilege user runs its programs; doctor may
    # connect as another one.
    own_users = {APP_USER, unquote(urlsplit(ctx.broker_url.split(";")[0]).username or "")}
    version = tuple(int(part) for part in kombu.__version__.split(".")[:3] if part.isdigit())
    return upgrade_findings(queues=rows["queues"], channels=rows["channels"],
                            own_users=own_users, kombu_version=version)
