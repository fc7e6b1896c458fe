"""Settings, read from the environment in this one place.

DJANGO_ENV=production switches to secure defaults (and requires DJANGO_SECRET_KEY and
DJANGO_ALLOWED_HOSTS); anything else is the embedded development mode.
DATABASE_URL selects the database; without it, a SQLite file under var/.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


PRODUCTION = os.environ.get("DJANGO_ENV", "development") == "production"
DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)

if PRODUCTION:
    SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
    ALLOWED_HOSTS = os.environ["DJANGO_ALLOWED_HOSTS"].split(",")
else:
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-key-for-the-embedded-demo-not-secret")
    ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "django_htmx",
    "django_fsm",
    "fulfillment.core",
    "orders",
    "exceptions",
    "approvals",
    "integrations",
    "portal",
    "portal.api",
]

MIDDLEWARE = [
    "portal.observability.RequestIdMiddleware",
    "portal.observability.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "fulfillment.urls"
WSGI_APPLICATION = "fulfillment.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.nav",
            ],
        },
    },
]

SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
    elif env_bool("DATABASE_PREPARED_STATEMENTS", default=True):
        # Lets the hot statements that ask for it (claim next) be prepared once per
        # connection; Django's own queries bind on the client and are never prepared.
        # Set DATABASE_PREPARED_STATEMENTS=0 behind a pooler that cannot keep them
        # (PgBouncer in transaction mode before 1.21).
        DATABASES["default"]["OPTIONS"] = {"prepare_threshold": 5}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "portal.sqlite3",
            "OPTIONS": SQLITE_OPTIONS,
            # A file, not memory, so that racing threads and a qcluster see the test data.
            "TEST": {"NAME": VAR_DIR / "test.sqlite3"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
FORMS_URLFIELD_ASSUME_HTTPS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("PORTAL_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise looks there even before collectstatic
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.filebased.EmailBackend",
)
# Development: notification emails land as files in var/mail/ instead of flooding the console.
EMAIL_FILE_PATH = os.environ.get("DJANGO_EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "portal@localhost")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")

# Background tasks (django-q2). The ORM broker needs no service; Q_BROKER=redis://…
# switches to Redis. timeout < retry so that no task runs twice; attempts are finite.
Q_CLUSTER = {
    "name": "fulfillment",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": 60,
    "retry": 90,
    "max_attempts": 3,
    "save_limit": 1000,
    "catch_up": False,
    "sync": env_bool("Q_SYNC"),
    "orm": "default",
}
if os.environ.get("Q_BROKER", "").startswith("redis://"):
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = os.environ["Q_BROKER"]

# LOG_FORMAT=json (the default in production): one JSON object per line. Every record
# carries the request id (portal.observability).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json" if PRODUCTION else "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "portal.observability.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "portal.observability.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per request (method, path, status, route, duration_ms, request_id).
        "portal.access": {"level": os.environ.get("ACCESS_LOG_LEVEL", "INFO" if PRODUCTION else "WARNING")},
    },
}

# Throttle counters and other cache entries: per process unless CACHE_URL names a Redis.
if os.environ.get("CACHE_URL", "").startswith("redis://"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
        }
    }

# The API (portal/api/__init__.py describes its conventions).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api.permissions.RoleAndScope"],
    "DEFAULT_THROTTLE_CLASSES": [
        "portal.api.throttling.TokenRateThrottle",
        "portal.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "token": os.environ.get("API_THROTTLE_TOKEN", "600/min"),
        "user": os.environ.get("API_THROTTLE_USER", "120/min"),
    },
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.KeysetPagination",
    "DEFAULT_FILTER_BACKENDS": ["portal.api.filters.StrictFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "portal.api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "portal.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fulfillment Ops Portal API",
    "DESCRIPTION": (
        "Orders, master data and work queues of the portal, for partners and scripts. "
        "Authenticate with `Authorization: Token <key>`; errors are application/problem+json."
    ),
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.models.Status",
        "InvoiceStatusEnum": "orders.models.Invoice.InvoiceStatus",
        "TierEnum": "orders.models.Tier",
        "WorkItemKindEnum": "fulfillment.core.models.WorkItem.Kind",
        "WorkItemStateEnum": "fulfillment.core.models.WorkItem.State",
        "ApprovalKindEnum": "approvals.models.Kind",
        "OutboxStateEnum": "fulfillment.core.models.OutboxMessage.State",
        "InboundEventStateEnum": "integrations.models.InboundEvent.State",
    },
}
# /metrics also answers `Authorization: Bearer <METRICS_TOKEN>` (portal/ops.py).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# Outbox relay: exponential backoff with jitter between attempts, and a circuit breaker
# per endpoint that opens after this many failures in a row.
OUTBOX_RETRY_BASE_SECONDS = float(os.environ.get("OUTBOX_RETRY_BASE_SECONDS", "2"))
OUTBOX_RETRY_MAX_SECONDS = float(os.environ.get("OUTBOX_RETRY_MAX_SECONDS", "600"))
OUTBOX_LEASE_SECONDS = float(os.environ.get("OUTBOX_LEASE_SECONDS", "60"))
CIRCUIT_FAILURE_THRESHOLD = int(os.environ.get("CIRCUIT_FAILURE_THRESHOLD", "5"))
CIRCUIT_COOLDOWN_SECONDS = float(os.environ.get("CIRCUIT_COOLDOWN_SECONDS", "30"))
