"""The package's settings check names each misspelt, mistyped or unloadable
QUEUEWORKS_* setting."""

from queueworks.core.checks_conf import check_project_pieces, check_settings


def test_the_example_projects_settings_pass():
    from django.conf import settings

    configured = {k[len("QUEUEWORKS_"):]: getattr(settings, k) for k in dir(settings)
                  if k.startswith("QUEUEWORKS_")}
    assert "TOPOLOGY" in configured
    assert check_settings(configured) == [] and check_project_pieces() == []


def test_each_wrong_setting_is_named():
    errors = check_settings({
        "TASKAPI_PAGE_SIZ": 10,                 # misspelt
        "TASKAPI_PAGE_SIZE": "50",              # a string for an int
        "TASKAPI_BROKER_TIMEOUT": 2,            # an int for a float is fine
        "METRICS_USERNAME": 1,                  # not a str
        "TASK_QUEUE_TYPE": "stream",            # not a choice
        "TRUSTED_PROXIES": ["10.0.0.0/8", "nginx"],  # not an address
    })
    messages = [e.msg for e in errors]
    assert messages == [
        "QUEUEWORKS_METRICS_USERNAME: must be str, not int (1).",
        "QUEUEWORKS_TASKAPI_PAGE_SIZ: no such setting.",
        "QUEUEWORKS_TASKAPI_PAGE_SIZE: must be int, not str ('50').",
        "QUEUEWORKS_TASK_QUEUE_TYPE: must be one of classic, quorum, not 'stream'.",
        "QUEUEWORKS_TRUSTED_PROXIES: 'nginx' is not an address or network.",
    ]
    assert errors[1].hint == "Did you mean QUEUEWORKS_TASKAPI_PAGE_SIZE?"


def test_a_topology_that_cannot_be_loaded_is_named(settings):
    settings.QUEUEWORKS_TOPOLOGY = "projectname.no_such_module:TOPOLOGY"
    settings.QUEUEWORKS_CELERY_APP = "projectname.topology:TOPOLOGY"
    messages = [e.msg for e in check_project_pieces()]
    assert len(messages) == 2
    assert messages[0].startswith("QUEUEWORKS_TOPOLOGY: cannot load "
                                  "'projectname.no_such_module:TOPOLOGY': ModuleNotFoundError")
    assert messages[1] == ("QUEUEWORKS_CELERY_APP: 'projectname.topology:TOPOLOGY' is a "
                           "Topology, not a Celery application.")
