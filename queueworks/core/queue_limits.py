"""The dead-letter names and the delivery and priority limits every declared
queue carries to RabbitMQ (``Queue.arguments`` in queueworks/core/topology.py,
which re-exports them).
"""

# Dead letters (see queueworks/reliability): every work queue dead-letters rejected
# messages to this fanout exchange, which feeds one durable queue.  RabbitMQ
# records why and from where in the message's x-death header.
DEAD_LETTER_EXCHANGE = "dead_letter"
DEAD_LETTER_QUEUE = "dead_letter"
# How many times a message may START executing before it is dead-lettered
# instead (a task that kills its worker every time must not loop forever).
# Classic queues have no x-delivery-limit, so queueworks/reliability counts
# deliveries per task id in the database.  A Route may set its own limit.
DELIVERY_LIMIT = 5
# Quorum queues count deliveries themselves (x-delivery-limit) and, since
# RabbitMQ 4.0, default to 20 and DROP the message past it unless a
# dead-letter exchange is set.  Both are set explicitly.  The broker's count
# is a backstop above the database count: it also counts messages a worker
# had prefetched but never started when it died, which must not be
# dead-lettered as poison.
QUORUM_DELIVERY_LIMIT = 20
# The dead-letter queue's own limit, as a quorum queue.  Reading a dead letter
# without removing it (dead_letters_list: /ops/, `manage.py dead_letters
# list`) gives it back, which a quorum queue counts as a delivery: with 4.x's
# default of 20 the twenty-first look would drop it for good.  Explicit and
# out of reach instead.  Not -1, 4.x's "no limit": 3.x reads -1 as a limit
# that every first delivery exceeds.
DEAD_LETTER_DELIVERY_LIMIT = 2**31 - 1
# RabbitMQ 4.x quorum queues have two priority levels: AMQP priority 0-4
# (and none) is "normal", 5-9 is "high"; high-priority messages are delivered
# first (2 high for every normal one while both wait).  3.x quorum queues
# ignore priorities.  docs/topology.md.
QUORUM_HIGH_PRIORITY = 5
