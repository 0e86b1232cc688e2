"""schemathesis hooks for the Task API fuzz runs (SCHEMATHESIS_HOOKS=this module).

A start's ``eta`` must lie in the future and at most TASKAPI_MAX_DELAY_SECONDS
ahead: a rule of the clock no schema can state, so generated bodies carrying
an ``eta`` are left out (tests/queueworks/taskapi/test_requests.py covers eta).
"""

import schemathesis


@schemathesis.hook
def filter_body(ctx, body):
    return not (isinstance(body, dict) and "eta" in body)
