"""Haven settings, read from the environment.

With no environment at all Haven runs its embedded defaults: SQLite, packs under var/,
a filesystem Celery broker. Production sets DATABASE_URL, CELERY_BROKER_URL, HAVEN_SECRET_KEY,
HAVEN_DEBUG=0 and the Vault variables (VAULT_ADDR, VAULT_CACERT, VAULT_TOKEN, ...).
"""
import ipaddress
import os
import re
import secrets
import shutil
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("HAVEN_DATA_DIR", BASE_DIR / "var")
PACK_DIR = env_path("HAVEN_PACK_DIR", DATA_DIR / "packs")
# s3://bucket/prefix puts packs in an S3-compatible bucket (boto3 reads AWS_ENDPOINT_URL,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION); unset: the folder PACK_DIR.
PACK_STORAGE = env_str("HAVEN_PACK_STORAGE").strip()
if PACK_STORAGE and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^?#]*)?", PACK_STORAGE):
    raise ImproperlyConfigured(f"HAVEN_PACK_STORAGE={PACK_STORAGE!r} is not s3://bucket/prefix")

DEBUG = env_bool("HAVEN_DEBUG", False)


def _secret_key() -> str:
    """Production passes HAVEN_SECRET_KEY; the embedded default keeps a random one under var/."""
    configured = env_str("HAVEN_SECRET_KEY")
    if configured:
        return configured
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # O_EXCL: two processes starting at once must agree on one key.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text().strip()
    with open(fd, "w") as handle:
        handle.write(key)
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("HAVEN_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("HAVEN_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_scim",
    "djangosaml2",
    "django_htmx",
    "django_otp",  # TOTP second factor for password sign-ins (console/mfa.py)
    "django_otp.plugins.otp_totp",  # OTP_TOTP_ISSUER below names Haven in authenticator apps
    # Haven's apps, lowest layer first (DESIGN §2); formats/ and agent/ are plain packages.
    "accounts",
    "archives",
    "keystore",
    "activity",
    "agentapi",
    "console",
]

MIDDLEWARE = [
    "agentapi.middleware.api_errors_as_json",  # outermost: /api/ errors are JSON, whoever produced them
    "config.monitoring.request_metrics",  # Prometheus counters (config/monitoring.py)
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): this session passed a TOTP code
    "djangosaml2.middleware.SamlSessionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "console.mfa.mfa_guard",  # unverified TOTP sessions out; administrators to enrollment when required
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]


def _database() -> dict:
    url = env_str("DATABASE_URL")
    if not url:
        url = f"sqlite:///{DATA_DIR / 'haven.sqlite3'}"
    # Connections persist (checked before reuse): opening one per request cost the agent's calls
    # ~3-6 ms each on SQLite (connect, PRAGMAs, and a WAL checkpoint when the last one closed)
    # and a backend process per request on PostgreSQL. HAVEN_DB_CONN_MAX_AGE=0 restores that.
    config = dj_database_url.parse(url, conn_max_age=env_int("HAVEN_DB_CONN_MAX_AGE", 600),
                                   conn_health_checks=True)
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        # WAL lets web, worker and beat read while one writes; IMMEDIATE takes the write lock
        # at BEGIN so two writers queue on busy_timeout instead of failing mid-transaction.
        # journal_size_limit: with persistent connections the last close never comes to delete
        # the WAL, which otherwise kept its high-water mark (9 MB after a 50,000-file first
        # backup, 14 MB at 200,000); the checkpoint that restarts it now cuts it to 4 MiB.
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=4194304;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    elif engine == "django.db.backends.postgresql":
        # No JIT: the console's fleet queries are costed high (a subquery per device) and JIT
        # compiled them for ~0.5 s to save milliseconds (bench/console.py); short OLTP queries
        # never gain from it.
        config["OPTIONS"] = {"options": "-c jit=off"}
        test_name = env_str("HAVEN_TEST_DATABASE_NAME")
        if test_name:
            config["TEST"] = {"NAME": test_name}
    else:
        raise ImproperlyConfigured(f"DATABASE_URL must be sqlite:// or postgresql://, not {engine}")
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's cache (the public API's rate counters, short-lived page figures) must be one every web
# process shares, never a per-process LocMemCache: Redis when HAVEN_CACHE_URL names one (redis:// or
# rediss://), else the database cache, on SQLite and PostgreSQL. Sessions are database rows; login
# throttles and SAML replay ids have their own tables (docs/operations.md, "What is shared").
HAVEN_CACHE_URL = env_str("HAVEN_CACHE_URL")
if HAVEN_CACHE_URL and not HAVEN_CACHE_URL.startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured("HAVEN_CACHE_URL must be redis:// or rediss:// (or unset: the database cache)")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": HAVEN_CACHE_URL,
                "KEY_PREFIX": "haven"} if HAVEN_CACHE_URL else {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "haven_cache",
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"  # a row every process reads, never a process's memory

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "accounts.backends.ThrottledModelBackend",  # every password check is rate-limited and audited
    "console.saml.backends.OrganizationSamlBackend",
]

# SAML: one SP per organization, built per request (console/saml/sp.py).
SAML_CONFIG_LOADER = "console.saml.sp.sp_config_for_request"
SAML_SESSION_COOKIE_NAME = "haven_saml"
SAML_DEFAULT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
SAML_CREATE_UNKNOWN_USER = False  # the backend decides, per organization
SAML_IGNORE_LOGOUT_ERRORS = True
SAML_CSP_HANDLER = ""  # Haven's own pages set no inline scripts; the ACS needs no CSP changes
HAVEN_XMLSEC_BINARY = env_str("HAVEN_XMLSEC_BINARY", shutil.which("xmlsec1") or "/usr/bin/xmlsec1")
# The address IdPs and agents reach Haven at (entity ids and ACS URLs derive from it).
HAVEN_PUBLIC_URL = env_str("HAVEN_PUBLIC_URL")
# Fetch IdP metadata from private/loopback addresses too (off: only public addresses).
HAVEN_SAML_METADATA_ALLOW_PRIVATE = env_bool("HAVEN_SAML_METADATA_ALLOW_PRIVATE", False)
# The SP key pair every organization's SP signs with, the same on every web host: PEM files the
# operator provides (both, or neither), or else one pair Haven keeps in the database sealed under
# HAVEN_STORAGE_KEY (console/saml/sp_keys.py; `manage.py samlcert`).
HAVEN_SAML_SP_KEY_FILE = env_str("HAVEN_SAML_SP_KEY_FILE")
HAVEN_SAML_SP_CERT_FILE = env_str("HAVEN_SAML_SP_CERT_FILE")
if bool(HAVEN_SAML_SP_KEY_FILE) != bool(HAVEN_SAML_SP_CERT_FILE):
    raise ImproperlyConfigured("set both HAVEN_SAML_SP_KEY_FILE and HAVEN_SAML_SP_CERT_FILE, or neither")
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if env_bool("HAVEN_INSECURE_FAST_PASSWORD_HASHING_FOR_TESTS", False):
    # The test suite only (tests/worker_isolation.py sets it for every test process and the servers
    # they start): PBKDF2's 0.6 s per new user, sign-in and enrollment was most of the suite's CPU.
    # New hashes are MD5; PBKDF2 hashes still verify. Never set it anywhere else.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                        "django.contrib.auth.hashers.PBKDF2PasswordHasher"]
OTP_TOTP_ISSUER = "Haven"
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:dashboard"
LOGOUT_REDIRECT_URL = "console:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from finders; it only wants the folder
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Security: cookies are secure whenever Haven is served over TLS (HAVEN_HTTPS=1).
HTTPS = env_bool("HAVEN_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 31536000
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["agentapi.authentication.DeviceTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "agentapi.exceptions.haven_exception_handler",
    "DEFAULT_PARSER_CLASSES": ["agentapi.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
    # The public API's calls per API client (agentapi/public/base.py), counted in the database cache.
    "DEFAULT_THROTTLE_RATES": {"public_api": env_str("HAVEN_PUBLIC_API_RATE", "600/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Haven Agent API",
    "DESCRIPTION": "The versioned API endpoint agents use to enroll, back up and restore.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Two choice sets are both called `status`: name each, or the schema gets a generated name.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "agentapi.apis.runs.RUN_STATUSES",
        "LastBackupResultEnum": "agentapi.apis.service.LAST_RESULTS",
        "PublicBackupRunStatusEnum": "agentapi.public.reads.BACKUP_RUN_STATUSES",
        "PublicRestoreStatusEnum": "agentapi.public.restores.RESTORE_STATUSES",
        "PublicAlertStatusEnum": "agentapi.public.alerts.ALERT_STATUSES",
    },
}

SCIM_SERVICE_PROVIDER = {
    # SCIM 2.0 at /scim/v2/ (console/scim/): django-scim2, scoped to the organization of the bearer token.
    "NETLOC": env_str("HAVEN_PUBLIC_NETLOC", "127.0.0.1:8000"),
    "USER_ADAPTER": "console.scim.adapters.ScimUser",
    "GROUP_MODEL": "accounts.models.Group",
    "GROUP_ADAPTER": "console.scim.adapters.ScimGroup",
    "USER_FILTER_PARSER": "console.scim.filters.UserFilterQuery",
    "GROUP_FILTER_PARSER": "console.scim.filters.GroupFilterQuery",
    "SERVICE_PROVIDER_CONFIG_MODEL": "console.scim.schemas.ServiceProviderConfig",
    "SCHEMAS_GETTER": "console.scim.schemas.schemas_getter",
    "BASE_LOCATION_GETTER": "console.scim.schemas.base_location",
    "AUTH_CHECK_MIDDLEWARE": "console.scim.auth.ScimTokenAuth",
    "AUTHENTICATION_SCHEMES": [{
        "type": "oauthbearertoken",
        "name": "Bearer token",
        "description": "A per-organization token from the console or `manage.py scimtoken --org NAME`",
        "primary": True,
    }],
}

# Password and enrollment-code throttles (console, /admin/, enrollment; docs/decisions.md): failed
# attempts per client address and per (account, address) in a short window, and a per-account
# ceiling over a long one past which only addresses the account signed in from recently get in.
HAVEN_AUTH_WINDOW = timedelta(minutes=env_int("HAVEN_AUTH_WINDOW_MINUTES", 15))
HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS = env_int("HAVEN_AUTH_MAX_ATTEMPTS_PER_ADDRESS", 50)
HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS = env_int("HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS", 10)
HAVEN_AUTH_ACCOUNT_WINDOW = timedelta(hours=env_int("HAVEN_AUTH_ACCOUNT_WINDOW_HOURS", 24))
HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT = env_int("HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT", 100)
HAVEN_AUTH_KNOWN_ADDRESS_DAYS = env_int("HAVEN_AUTH_KNOWN_ADDRESS_DAYS", 30)
# Reverse proxies whose forwarded header names the client (addresses or CIDRs, comma-separated);
# from any other peer the header is ignored and REMOTE_ADDR is the client (accounts/network.py).
HAVEN_TRUSTED_PROXIES = env_list("HAVEN_TRUSTED_PROXIES", [])
HAVEN_TRUSTED_PROXY_HEADER = env_str("HAVEN_TRUSTED_PROXY_HEADER", "X-Forwarded-For")
for _proxy in HAVEN_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"HAVEN_TRUSTED_PROXIES: {_proxy!r} is not an address or CIDR") from None

# Celery: the embedded default needs no broker server (kombu's filesystem transport).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_celery_dir = DATA_DIR / "celery"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),  # default: ./control in whatever the cwd is
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {
        # With acks_late, Redis hands an unacknowledged task to another worker after the visibility
        # timeout (default 1 h): it must outlast the longest task time limit (a full verification's 12 h),
        # or a long restore or key migration would run twice at once.
        # tests/keystore/test_celery_settings.py checks it.
        "visibility_timeout": 13 * 3600,
    }
)
if CELERY_BROKER_URL.startswith("filesystem"):
    # kombu's filesystem transport, but a consumer never takes a half-written message
    # (config/filesystem_broker.py): one stopped the worker and with it `manage.py serve`.
    CELERY_BROKER_TRANSPORT = "config.filesystem_broker:Transport"
    # kombu's filesystem transport does not create its folders itself.
    for _folder in ("queue", "processed", "control"):
        (_celery_dir / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = 600
CELERY_TASK_TIME_LIMIT = 900
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Key-handling tasks run on their own queue; its worker uses --max-tasks-per-child=1.
CELERY_TASK_ROUTES = {"haven.keystore.*": {"queue": "keys"}}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {
        "task": "haven.accounts.worker_heartbeat",
        "schedule": float(env_int("HAVEN_HEARTBEAT_SECONDS", 60)),
        "kwargs": {"source": "beat"},
    },
    "private-keystore-certificates": {
        "task": "haven.keystore.renew_certificates",
        "schedule": 24 * 3600.0,
    },
    "orphan-packs-collect": {
        "task": "haven.archives.orphan_packs_collect",
        "schedule": 24 * 3600.0,
    },
    # Restore zips are kept 24 h; this deletes them once expired (archives/restores.py).
    "restore-results-expire": {"task": "haven.archives.restore_results_expire", "schedule": 3600.0},
    # Devices without a completed backup in their policy's stale_days (archives/stale_devices.py).
    "stale-devices-check": {"task": "haven.archives.stale_devices_check", "schedule": 3600.0},
    # File activity: detection rules and SIEM export, incremental by cursor (activity/detection, activity/export).
    "activity-detection": {"task": "haven.activity.detection_run", "schedule": 60.0},
    "activity-export": {"task": "haven.activity.export_run", "schedule": 60.0},
    "activity-connectors": {"task": "haven.activity.connectors_pull", "schedule": 300.0},
    # Verification, restore drills, departed users (archives/safeguard_tasks.py).
    "verify-sample": {"task": "haven.archives.verify_sample", "schedule": 24 * 3600.0,
                      "options": {"queue": "maintenance"}},
    "verify-full": {"task": "haven.archives.verify_full", "schedule": 7 * 24 * 3600.0,
                    "options": {"queue": "maintenance"}},
    "restore-drills": {"task": "haven.keystore.restore_drills", "schedule": 24 * 3600.0},
    "departed-archives-remove": {"task": "haven.archives.departed_archives_remove", "schedule": 24 * 3600.0,
                                 "options": {"queue": "maintenance"}},
}

# Vault (keystore): Vault's own variable names, as hvac and the vault CLI read them.
# Without VAULT_ADDR, Haven runs its embedded OpenBao (raft storage under var/keystore).
# GET /metrics needs `Authorization: Bearer <token>`; unset: only direct, unproxied loopback requests.
HAVEN_METRICS_TOKEN = env_str("HAVEN_METRICS_TOKEN")
VAULT_ADDR = env_str("VAULT_ADDR")  # one address, or the comma-separated nodes of a raft cluster
# With several nodes: how long a call keeps moving across them (an election after the active node died).
HAVEN_KEYSTORE_FAILOVER_SECONDS = env_int("HAVEN_KEYSTORE_FAILOVER_SECONDS", 30)
VAULT_CACERT = env_str("VAULT_CACERT")
VAULT_TOKEN = env_str("VAULT_TOKEN")
VAULT_ROLE_ID = env_str("VAULT_ROLE_ID")
VAULT_SECRET_ID = env_str("VAULT_SECRET_ID")
VAULT_CLIENT_CERT = env_str("VAULT_CLIENT_CERT")
VAULT_CLIENT_KEY = env_str("VAULT_CLIENT_KEY")
# A separate token for the audited privileged path (deleting keys after a migration).
VAULT_PRIVILEGED_TOKEN = env_str("VAULT_PRIVILEGED_TOKEN")
HAVEN_KEYSTORE_DIR = DATA_DIR / "keystore"
HAVEN_KEYSTORE_PORT = env_int("HAVEN_KEYSTORE_PORT", 8200)
# Raft snapshots of Haven's keystore onto the pack storage (keystore/snapshots.py): every N hours
# (0: off, for operators who snapshot it themselves), the newest N kept.
HAVEN_KEYSTORE_SNAPSHOT_HOURS = env_int("HAVEN_KEYSTORE_SNAPSHOT_HOURS", 24)
HAVEN_KEYSTORE_SNAPSHOT_KEEP = env_int("HAVEN_KEYSTORE_SNAPSHOT_KEEP", 14)
if HAVEN_KEYSTORE_SNAPSHOT_HOURS < 0 or HAVEN_KEYSTORE_SNAPSHOT_KEEP < 1:
    raise ImproperlyConfigured("HAVEN_KEYSTORE_SNAPSHOT_HOURS must be 0 or more and HAVEN_KEYSTORE_SNAPSHOT_KEEP 1 or more")
# Hourly, on the default queue and without any token: is a snapshot due (then it is queued on
# `keys`, whose worker alone holds the privileged token), or is the newest one too old (an alert)?
CELERY_BEAT_SCHEDULE["keystore-snapshot"] = {"task": "haven.snapshots.keystore_check", "schedule": 3600.0}
# Seals secrets kept in the database (a private keystore's PKCS12). It must live outside the data
# folder: the variable, or a file outside it (HAVEN_STORAGE_KEY_FILE, e.g. a systemd credential).
# Required in production; only the embedded default falls back to the secret key (keystore/sealing.py).
HAVEN_STORAGE_KEY_FILE = env_str("HAVEN_STORAGE_KEY_FILE")
HAVEN_STORAGE_KEY = env_str("HAVEN_STORAGE_KEY") or (
    Path(HAVEN_STORAGE_KEY_FILE).read_text().strip() if HAVEN_STORAGE_KEY_FILE else "")
# Private keystores (an organization's own Vault) on private/loopback addresses (off: public only).
HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE = env_bool("HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE", False)
# Lifetime asked for a renewed private-keystore client certificate (the customer's role may cap it).
HAVEN_PRIVATE_CERT_TTL = env_str("HAVEN_PRIVATE_CERT_TTL", "2160h")
# Where each key-access record's hash is anchored in the keystore (create-only, listable).
HAVEN_AUDIT_ANCHOR_PREFIX = env_str("HAVEN_AUDIT_ANCHOR_PREFIX", "haven-audit")

EMAIL_BACKEND = env_str("HAVEN_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("HAVEN_FROM_EMAIL", "haven@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("HAVEN_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "xmlschema": {"level": "WARNING"}},
}

# Upload limits (DESIGN §9: size limits on every upload).
HAVEN_MAX_BATCH_BYTES = env_int("HAVEN_MAX_BATCH_BYTES", 64 * 1024 * 1024)
HAVEN_MAX_COMMIT_BYTES = env_int("HAVEN_MAX_COMMIT_BYTES", 32 * 1024 * 1024)

# Orphan packs (a crash between a pack's fsync and its index commit): quarantined after the grace
# period, deleted after the retention period (docs/decisions.md).
HAVEN_ORPHAN_GRACE_HOURS = env_int("HAVEN_ORPHAN_GRACE_HOURS", 24)
# Detection rules read events only this old: an ingestion transaction still in flight holds lower ids.
HAVEN_DETECTION_LAG_SECONDS = env_int("HAVEN_DETECTION_LAG_SECONDS", 10)
HAVEN_ORPHAN_RETENTION_DAYS = env_int("HAVEN_ORPHAN_RETENTION_DAYS", 30)

# Archive maintenance (docs/maintenance.md): an unreferenced block is deleted only this long after
# its last reference or "you already have it" answer; compaction rewrites packs under this share
# of live bytes; a maintenance lease lapses this long after its worker stops renewing it.
HAVEN_GC_GRACE_SECONDS = env_int("HAVEN_GC_GRACE_SECONDS", 86400)
HAVEN_COMPACT_THRESHOLD = env_int("HAVEN_COMPACT_THRESHOLD_PERCENT", 60) / 100
HAVEN_MAINTENANCE_LEASE_SECONDS = env_int("HAVEN_MAINTENANCE_LEASE_SECONDS", 900)
# Aggregation (docs/maintenance.md): small packs (under SMALL_PERCENT of the target) older than the
# settle age are merged into packs of at most the target size, by size class, once a group reaches
# the small size or MERGE_COUNT packs; an archive with no new pack for QUIET_DAYS has all merged.
HAVEN_PACK_TARGET_MIB = env_int("HAVEN_PACK_TARGET_MIB", 32)
HAVEN_PACK_SMALL_PERCENT = env_int("HAVEN_PACK_SMALL_PERCENT", 50)
HAVEN_PACK_MERGE_COUNT = env_int("HAVEN_PACK_MERGE_COUNT", 8)
HAVEN_PACK_SETTLE_SECONDS = env_int("HAVEN_PACK_SETTLE_SECONDS", 3600)
HAVEN_PACK_QUIET_DAYS = env_int("HAVEN_PACK_QUIET_DAYS", 7)
if not (HAVEN_PACK_TARGET_MIB >= 1 and 1 <= HAVEN_PACK_SMALL_PERCENT <= 100 and HAVEN_PACK_MERGE_COUNT >= 2):
    raise ImproperlyConfigured("HAVEN_PACK_TARGET_MIB must be ≥ 1, HAVEN_PACK_SMALL_PERCENT 1–100 and "
                               "HAVEN_PACK_MERGE_COUNT ≥ 2")
CELERY_TASK_ROUTES["haven.maintenance.*"] = {"queue": "maintenance"}  # restores never wait behind compaction
for _task in ("haven.archives.verify_sample", "haven.archives.verify_full", "haven.archives.departed_archives_remove"):
    CELERY_TASK_ROUTES[_task] = {"queue": "maintenance"}  # long keyless scans, beside compaction
CELERY_BEAT_SCHEDULE["archives-maintain"] = {"task": "haven.maintenance.archives_maintain", "schedule": 6 * 3600.0}
