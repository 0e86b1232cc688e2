"""Django settings, read from the environment (see .env.example).

Two profiles (queueworks/core/profiles.py, docs/production.md): DJANGO_PROFILE=
development has development defaults; production (also an unset
DJANGO_PROFILE) has no default for anything secret and refuses to start
while a development default survives.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path

from queueworks.core import profiles
# First: reads .env, which the topology (DJANGO_TEST_SUPPORT) and the rest depend on.
from projectname.settings_env import (  # noqa: F401
    BASE_DIR, DEVELOPMENT, PROFILE, TEST_SUPPORT, TIME_ZONE, env,
)
from projectname.topology import TEST_SUPPORT_APP  # noqa: E402
import queueworks  # noqa: E402
# Defaults exist only in development; production reads each value or refuses.
DEBUG = env.bool("DJANGO_DEBUG", default=DEVELOPMENT)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-secret-key" if DEVELOPMENT else "")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS",
                         default=["127.0.0.1", "localhost"] if DEVELOPMENT else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # The package's apps and the ones they need (django-celery-results and
    # -beat, REST framework, drf-spectacular: queueworks/__init__.py).
    *queueworks.INSTALLED_APPS,
    # Task API tokens; Swagger UI's files served from here, not a CDN.
    "rest_framework.authtoken", "drf_spectacular_sidecar",
    "apps.notifications",
    "apps.reports",
    *([TEST_SUPPORT_APP] if TEST_SUPPORT else []),
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves static files (admin, API docs) from the app directories in production too.
    "queueworks.core.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: refuses a locked-out login.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "projectname.urls"
WSGI_APPLICATION = "projectname.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
# Embedded SQLite by default; DATABASE_URL=postgres://user:password@host:5432/name
# switches to PostgreSQL, the production profile of a multi-host inventory
# (docs/deployment.md): SQLite is refused there (settings_hosts.py).
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers, beat and the web server write concurrently: WAL lets readers
    # and one writer proceed together, IMMEDIATE takes the write lock up front
    # (no deadlock-style "database is locked" on lock upgrade), and the
    # timeout waits for a busy writer instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Several machines (projectname/inventory.py) refuse a database only one of them has.
from projectname.settings_hosts import INVENTORY, refuse_unshared_database  # noqa: E402

refuse_unshared_database(INVENTORY, DATABASES["default"])

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Time ----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `manage.py collectstatic` writes here; behind nginx (deploy/nginx/) a
# directory nginx can read, e.g. /var/www/projectname/static.
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "run" / "static"))

# --- E-mail ---------------------------------------------------------------------
EMAIL_BACKEND = env(
    "EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=str(BASE_DIR / "run" / "mail"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="tasks@localhost")
OPERATOR_EMAILS = env.list("OPERATOR_EMAILS", default=["ops@localhost"])
# Alerts and dead-letter notices go to the same people (queueworks/ops/alerts.py).
QUEUEWORKS_OPERATOR_EMAILS = OPERATOR_EMAILS

# --- The package (queueworks/conf.py): the project's pieces, by dotted path -----
QUEUEWORKS_TOPOLOGY = "projectname.topology:TOPOLOGY"
QUEUEWORKS_INVENTORY = "projectname.inventory:INVENTORY"
QUEUEWORKS_CELERY_APP = "projectname.celery:app"
QUEUEWORKS_PROJECT_NAME = "projectname"
QUEUEWORKS_PROFILE = PROFILE
QUEUEWORKS_TASKAPI_ALLOWLIST = "projectname.allowlist:ALLOWLIST"
QUEUEWORKS_TEST_SUPPORT_APP = TEST_SUPPORT_APP
# Django's task API (@task functions) on the topology's queues, through the outbox.
TASKS = {"default": {"BACKEND": "queueworks.tasks_backend.QueueworksBackend"}}

# --- Celery (projectname/settings_celery.py) ----------------------------------------
from projectname.settings_celery import *  # noqa: E402,F401,F403
from projectname.settings_celery import CELERY_BROKER_URL  # noqa: E402

# --- Logging ----------------------------------------------------------------------
# Workers use this too (see the setup_logging hook in projectname/celery.py).
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "celery": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

# --- Task API: /api/v1/, results storage (queueworks/taskapi) -----------------
# Results (django-db) are deleted after this many seconds by Celery's daily
# "celery.backend_cleanup" beat entry (declared in the topology, on main_worker).
CELERY_RESULT_EXPIRES = env.int("CELERY_RESULT_EXPIRES", default=7 * 24 * 3600)
REST_FRAMEWORK = {
    # Token first, so an anonymous request gets 401 with WWW-Authenticate: Token.
    # Hashed tokens (queueworks/apitokens); a DRF authtoken key still stored in
    # clear is converted on first use (docs/task-api.md, "Tokens").
    "DEFAULT_AUTHENTICATION_CLASSES": queueworks.AUTHENTICATION_CLASSES,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, also for browsers: errors are never an HTML page (the
    # browsable documentation is /api/docs/).
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Per user and per scope (queueworks/taskapi/throttles.py); rates: TASKAPI_THROTTLE_RATES.
    "DEFAULT_THROTTLE_CLASSES": ["queueworks.taskapi.throttles.ScopedUserThrottle"],
}
# API tokens (django-rest-knox): only a hash is stored; each has a name and
# expires API_TOKEN_DAYS after it is created (manage.py apitoken_create).
KNOX_TOKEN_MODEL = "apitokens.ApiToken"
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=env.int("API_TOKEN_DAYS", default=90)),
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Task API",
    "DESCRIPTION": "Start allowlisted Celery tasks on their queues, follow, cancel and re-run "
                   "them, see workers and queues. Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # 3.1: JSON Schema's prefixItems/const describe each task's arguments exactly.
    "OAS_VERSION": "3.1.0",
    # Rules a per-field schema cannot say (countdown or eta; a task's own queues).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "queueworks.taskapi.schema.describe_cross_field_rules",
    ],
}
# Serve static files straight from the apps (no collectstatic step needed).
WHITENOISE_USE_FINDERS = True
# Broker access from a request: connect timeout (s) and quick retries, so an
# unreachable broker is a 503 within a few seconds, never a hanging request.
QUEUEWORKS_TASKAPI_BROKER_TIMEOUT = env.float("TASKAPI_BROKER_TIMEOUT", default=2.0)
QUEUEWORKS_TASKAPI_BROKER_RETRIES = env.int("TASKAPI_BROKER_RETRIES", default=1)
# Seconds /api/v1/workers/ waits for workers to answer.
QUEUEWORKS_TASKAPI_INSPECT_TIMEOUT = env.float("TASKAPI_INSPECT_TIMEOUT", default=1.0)
# Longest countdown/eta accepted: RabbitMQ closes a channel holding an
# unacknowledged (waiting ETA) message past its consumer_timeout (30 min).
QUEUEWORKS_TASKAPI_MAX_DELAY_SECONDS = env.int("TASKAPI_MAX_DELAY_SECONDS", default=25 * 60)
QUEUEWORKS_TASKAPI_MAX_BODY_BYTES = env.int("TASKAPI_MAX_BODY_BYTES", default=64 * 1024)
# Deepest nesting of arrays/objects in a request body (a start is 3 deep).
QUEUEWORKS_TASKAPI_MAX_JSON_DEPTH = env.int("TASKAPI_MAX_JSON_DEPTH", default=8)
QUEUEWORKS_TASKAPI_PAGE_SIZE = env.int("TASKAPI_PAGE_SIZE", default=50)
# An accepted task whose message the broker has not confirmed this many seconds
# later is published again by the outbox sweeper (beat, every
# OUTBOX_SWEEP_SECONDS in projectname/topology.py); a confirm normally
# arrives within milliseconds.
QUEUEWORKS_TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS = env.float("TASKAPI_OUTBOX_REPUBLISH_AFTER_SECONDS",
                                                   default=60.0)

# --- Operations: /ops/ dashboard, alerts, database schedules (queueworks/ops) ---
# RabbitMQ's management API: queue lengths, consumers, oldest message's age.
# Credentials default to the broker URL's; the vhost is always the broker's.
QUEUEWORKS_RABBITMQ_MANAGEMENT_URL = env("RABBITMQ_MANAGEMENT_URL", default="http://127.0.0.1:15672")
QUEUEWORKS_RABBITMQ_MANAGEMENT_USER = env("RABBITMQ_MANAGEMENT_USER", default="")
QUEUEWORKS_RABBITMQ_MANAGEMENT_PASSWORD = env("RABBITMQ_MANAGEMENT_PASSWORD", default="")
# Where wait-time alerts go (dotted paths of classes with send(incident, message)).
QUEUEWORKS_OPS_ALERT_CHANNELS = env.list("OPS_ALERT_CHANNELS", default=[
    "queueworks.ops.alerts.LogChannel", "queueworks.ops.alerts.EmailChannel",
])
# "Work waiting with no consumer" must last this long before it alerts
# (a worker restart is not an incident).
QUEUEWORKS_OPS_NO_CONSUMER_GRACE_SECONDS = env.int("OPS_NO_CONSUMER_GRACE_SECONDS", default=30)
QUEUEWORKS_OPS_REFRESH_SECONDS = env.int("OPS_REFRESH_SECONDS", default=10)
# The alerts program evaluates every alert this often (seconds).
QUEUEWORKS_OPS_ALERTS_INTERVAL_SECONDS = env.int("OPS_ALERTS_INTERVAL_SECONDS", default=60)

# --- Metrics (queueworks/metrics, docs/metrics.md) ------------------------------
# HTTP basic credentials a Prometheus scraper sends to /metrics.  Unset: only
# signed-in users with metrics.view_metrics may scrape.
QUEUEWORKS_METRICS_USERNAME = env("METRICS_USERNAME", default="")
QUEUEWORKS_METRICS_PASSWORD = env("METRICS_PASSWORD", default="")

LOGIN_URL = "login"

# --- Performance ----------------------------------------------------------
# Database connections stay open (checked before reuse) instead of one new
# connection per request or per received task: the worker's main process
# looks up every received task (queueworks/taskapi/signals.py), and connecting to
# the database each time cost more than running a short task.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Celery's Django fixup closes every database connection before and after
# EVERY task unless this is set (celery/fixups/django.py), which made a solo
# pool process reconnect twice per task.  Now it closes them every this many
# tasks; CONN_HEALTH_CHECKS still drops a connection the database broke.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=200)
# Most tasks one POST /api/v1/tasks/bulk/ may start (one broker batch).
QUEUEWORKS_DISPATCH_BULK_MAX_ITEMS = env.int("DISPATCH_BULK_MAX_ITEMS", default=1000)

# --- Production profile: HTTPS behind a reverse proxy, masked settings -------------
# The proxy terminates TLS and sets X-Forwarded-Proto; Django trusts that
# header only in production (the proxy must overwrite it on every request).
if not DEVELOPMENT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Start low and raise it once HTTPS is known to work (a year: 31536000).
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
    CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Django's error page and error e-mails mask settings whose names match this
# filter's pattern, which also covers URLs (a broker URL holds a password).
DEFAULT_EXCEPTION_REPORTER_FILTER = "queueworks.core.reporting.SafeExceptionReporterFilter"

if not CELERY_BROKER_URL:
    sys.exit("Refusing to start: CELERY_BROKER_URL is not set.  `make install` "
             "(deploy/bin/ensure-rabbitmq-user.sh) writes the project's own RabbitMQ user to .env; "
             "production sets it in the environment.")
profiles.enforce(
    profile=PROFILE, profile_was_set="DJANGO_PROFILE" in os.environ,
    problems=profiles.production_problems(
        debug=DEBUG, secret_key=SECRET_KEY, allowed_hosts=ALLOWED_HOSTS,
        broker_url=CELERY_BROKER_URL, environ=os.environ,
    ) if PROFILE == profiles.PRODUCTION else [],
)


# --- Security: throttles, login attempts, audit log (docs/security.md) -----------------
# Caches shared by every web process.  "default", a database table (created
# by migration ops 0003; Redis is optional): the workers' inspect snapshot.
# "throttles": request counters, written on every API request, kept in files
# on the host's disk (one web host; set THROTTLE_CACHE_DIR to shared storage or
# point it elsewhere for several) so counting never takes the database's write
# lock, which SQLite holds for the whole database; each file is rewritten in
# place under a lock (queueworks/core/file_cache.py), which costs no disk flush.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "django_cache",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    },
    "throttles": {
        "BACKEND": "queueworks.core.file_cache.InPlaceFileCache",
        "LOCATION": env("THROTTLE_CACHE_DIR", default=str(
            Path(env("RUN_DIR", default=str(BASE_DIR / "run"))) / "cache" / "throttles")),
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    },
}
# Requests per user (per address when anonymous) and scope, DRF's "N/period".
QUEUEWORKS_TASKAPI_THROTTLE_RATES = {
    "start": env("TASKAPI_THROTTLE_START", default="120/min"),
    "bulk": env("TASKAPI_THROTTLE_BULK", default="20/min"),
    "reads": env("TASKAPI_THROTTLE_READS", default="600/min"),
    "anon": env("TASKAPI_THROTTLE_ANON", default="60/min"),
}
# The workers' inspect snapshot (GET /api/v1/workers/, /ops/) is refreshed at
# most once per this many seconds across all web processes, in the background.
QUEUEWORKS_TASKAPI_WORKERS_SNAPSHOT_SECONDS = env.float("TASKAPI_WORKERS_SNAPSHOT_SECONDS", default=5.0)
# Login attempts (admin and /accounts/login/): locked out after this many
# failures per username and address, for AXES_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend, reading a user's permissions in one statement (queueworks/core/auth_backend.py).
    "queueworks.core.auth_backend.OneQueryModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client's address, for the lockout and the audit log: X-Forwarded-For is
# believed only from these peers (addresses or networks).  The shipped nginx
# runs on the web host and reaches gunicorn over loopback.
QUEUEWORKS_TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
AXES_CLIENT_IP_CALLABLE = "queueworks.core.client_address.client_address"
# Audit log (queueworks/ops/audit.py): kept this many days (0: forever).
QUEUEWORKS_OPS_AUDIT_RETENTION_DAYS = env.int("OPS_AUDIT_RETENTION_DAYS", default=180)
AXES_VERBOSE = False
