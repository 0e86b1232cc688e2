"""Message headers the dispatch layer and the worker's fast paths agree on."""

# Set on every task published with a record (the Task API's TaskRecord), so it
# can be cancelled before it runs.  Workers look a message up in the database
# only when it carries this header, was redelivered or is a retry
# (queueworks/taskapi/signals.py); the lean path leaves such messages to Celery's
# own path (queueworks/dispatch/lean.py).
RECORDED_HEADER = "taskapi_recorded"
