"""The Task API's users and clients, for the limits' HTTP tests."""

from tests.queueworks.taskapi.conftest import client_for, live_http, operator  # noqa: F401
