"""The Task API tests' HTTP client against the live system."""

from tests.queueworks.taskapi.conftest import live_http  # noqa: F401
