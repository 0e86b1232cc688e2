"""Django's error page never shows the broker URL's password (or Flower's)."""

from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from queueworks.core.reporting import SafeExceptionReporterFilter, mask_url_passwords

# Built from parts, so the page's source-code context never shows them.
PASSWORD = "-".join(["s3cret", "broker", "password"])
FLOWER_PASSWORD = "-".join(["flower", "password", "1"])
BROKER = f"pyamqp://projectname:{PASSWORD}@rabbit:5672/projectname"


def test_the_project_filter_is_djangos_default():
    assert isinstance(get_default_exception_reporter_filter(), SafeExceptionReporterFilter)


@override_settings(CELERY_BROKER_URL=BROKER, FLOWER_BASIC_AUTH=f"operator:{FLOWER_PASSWORD}",
                   QUEUEWORKS_OPS_NOTE=f"fallback {BROKER}", DEBUG=True)
def test_the_debug_page_masks_broker_url_and_auth_settings():
    request = RequestFactory().get("/")
    try:
        raise RuntimeError("boom")
    except RuntimeError as error:
        html = ExceptionReporter(request, type(error), error, error.__traceback__).get_traceback_html()
    assert PASSWORD not in html
    assert FLOWER_PASSWORD not in html
    assert "CELERY_BROKER_URL" in html and "OPS_NOTE" in html


def test_url_passwords_are_masked_in_any_value():
    assert mask_url_passwords(f"a {BROKER};{BROKER}") == (
        "a pyamqp://projectname:********@rabbit:5672/projectname;"
        "pyamqp://projectname:********@rabbit:5672/projectname")
    assert mask_url_passwords("http://example.org/a:b") == "http://example.org/a:b"
