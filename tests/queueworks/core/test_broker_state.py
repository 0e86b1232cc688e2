"""Declared vs live queue arguments, and a crash-looping program's last error."""

from queueworks.core.broker_state import QueueState, argument_differences
from queueworks.core.program_logs import last_error


def live(queue_type="classic", **arguments):
    return QueueState(name="q", exists=True, queue_type=queue_type, arguments=arguments)


def test_each_difference_is_named_with_both_values():
    declared = {"x-dead-letter-exchange": "dead_letter", "x-max-priority": 9}
    assert argument_differences(name="celery", declared=declared, live=live(**{
        "x-max-priority": 5, "x-message-ttl": 1000})) == [
        "queue celery: x-dead-letter-exchange is absent on the broker, declared 'dead_letter'",
        "queue celery: x-max-priority is 5 on the broker, declared 9",
        "queue celery: x-message-ttl is 1000 on the broker, not declared",
    ]


def test_the_type_is_compared_and_equal_queues_have_no_difference():
    declared = {"x-queue-type": "quorum", "x-dead-letter-exchange": "dead_letter"}
    assert argument_differences(name="bulk", declared=declared,
                                live=live(**{"x-dead-letter-exchange": "dead_letter"})) == [
        "queue bulk: type is classic on the broker, declared quorum"]
    assert argument_differences(name="bulk", declared=declared, live=live(
        "quorum", **{"x-queue-type": "quorum", "x-dead-letter-exchange": "dead_letter"})) == []
    assert argument_differences(name="bulk", declared=declared,
                                live=QueueState(name="bulk", exists=False)) == []


LOG = """\
[2026-12-02 15:00:00,000: INFO/MainProcess] Connected to amqp://guest:**@127.0.0.1:5672//
[2026-12-02 15:00:00,100: CRITICAL/MainProcess] Unrecoverable error: PreconditionFailed(406, ...)
Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/celery/worker/worker.py", line 202, in start
    self.blueprint.start(self)
amqp.exceptions.PreconditionFailed: Queue.declare: (406) PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange' for queue 'celery' in vhost '/': received the value 'dead_letter' of type 'longstr' but current is none
"""


def test_the_last_error_is_the_exception_line_of_the_traceback():
    assert last_error(LOG).startswith("amqp.exceptions.PreconditionFailed: Queue.declare: (406) "
                                      "PRECONDITION_FAILED - inequivalent arg 'x-dead-letter")
    assert last_error("[x: ERROR/MainProcess] consumer: Cannot connect\n") == \
        "[x: ERROR/MainProcess] consumer: Cannot connect"
    assert last_error("[x: INFO/MainProcess] ready\n") is None


def test_a_program_running_again_soon_after_it_stopped_shows_its_last_error():
    from queueworks.core.program_logs import shows_last_error

    running = {"statename": "RUNNING", "now": 1000, "start": 995, "stop": 990, "exitstatus": 0}
    assert shows_last_error(running)
    assert not shows_last_error({**running, "stop": 800, "start": 801})  # long ago
    assert not shows_last_error({**running, "stop": 0})                   # never stopped
    assert shows_last_error({"statename": "BACKOFF", "now": 1, "stop": 0, "exitstatus": 0})
