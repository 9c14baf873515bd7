"""Settings shared by every environment; everything that differs comes from the environment.

Embedded default (nothing installed): SQLite and Celery over kombu's filesystem transport.
Real deployment: DATABASE_URL=postgres://..., CELERY_BROKER_URL=redis://... (or amqp://...).
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.settings.env import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Runtime state (SQLite file, broker folders, media) lives under var/ unless told otherwise.
VAR_DIR = Path(env.str("REFRAIN_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env.str("SECRET_KEY", default="")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "catalog",
    "generation",
    "recommend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

DATABASES = {
    "default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'refrain.sqlite3'}")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web server and worker share the file: wait on locks instead of failing at once.
    # WAL: readers never wait on the writer; synchronous=NORMAL: commits need no fsync (a power
    # cut may lose the last commits, never corrupt the file).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "catalog.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Uploads are read into memory up to the MIDI limit; anything larger is refused before parsing.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

# Local memory unless CACHE_URL names a shared cache (redis://...): throttling counters and the
# feed's top-up guard are per process with local memory, which production refuses (production.py).
_CACHE_URL = env.str("CACHE_URL", default="locmemcache://")
CACHES = {
    "default": env.cache_url_config(
        _CACHE_URL,
        # Django's own Redis backend (no django-redis dependency).
        backend="django.core.cache.backends.redis.RedisCache" if _CACHE_URL.startswith("redis") else None,
    )
}

# --- MIDI ingestion limits (catalog.services.track_ingest) ---
REFRAIN_MIDI_MAX_BYTES = env.int("REFRAIN_MIDI_MAX_BYTES", default=1024 * 1024)
REFRAIN_MIDI_MAX_SECONDS = env.int("REFRAIN_MIDI_MAX_SECONDS", default=15 * 60)
REFRAIN_MIDI_MAX_NOTES = env.int("REFRAIN_MIDI_MAX_NOTES", default=20_000)

# --- REST framework ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["config.api.AnonThrottle", "config.api.UserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="120/min"),
        "user": env.str("THROTTLE_USER", default="600/min"),
        "auth": env.str("THROTTLE_AUTH", default="20/min"),
        "generation": env.str("THROTTLE_GENERATION", default="30/hour"),
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Refrain API",
    "DESCRIPTION": "Catalog, ratings, generation and recommendation of melodies.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery ---
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost//")
BROKER_DIR = Path(env.str("REFRAIN_BROKER_DIR", default=str(VAR_DIR / "broker")))


def filesystem_transport_options(broker_dir: Path) -> dict:
    """kombu's filesystem transport: messages and exchange bindings as files in one folder."""
    folders = {
        "data_folder_in": "queue",
        "data_folder_out": "queue",
        "processed_folder": "processed",
        "control_folder": "control",
    }
    options = {key: str(broker_dir / sub) for key, sub in folders.items()}
    for folder in set(options.values()):
        Path(folder).mkdir(parents=True, exist_ok=True)
    # Poll the folder every 100 ms (kombu's default is 1 s, which would dominate job latency).
    return {**options, "store_processed": False, "polling_interval": 0.1}


if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_transport_options(BROKER_DIR)
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A worker consuming `gpu,gpu-bulk` always takes a waiting generation job before bulk embeddings.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"queue_order_strategy": "priority"}
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ROUTES = {
    "generation.tasks.run_generation": {"queue": "gpu"},
    "recommend.tasks.embed_*": {"queue": "gpu-bulk"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Audio and piano-roll rendering (catalog.rendering; worker on the `cpu` queue) ---
# Debian: fluidsynth, fluid-soundfont-gm (or timgm6mb-soundfont), vorbis-tools. default-GM.sf2 is the
# Debian alternatives link that either SoundFont package installs.
REFRAIN_SOUNDFONT = env.str("REFRAIN_SOUNDFONT", default="/usr/share/sounds/sf2/default-GM.sf2")
REFRAIN_AUDIO_BITRATE_KBPS = env.int("REFRAIN_AUDIO_BITRATE_KBPS", default=96)  # Ogg Vorbis, stereo, nominal
REFRAIN_AUDIO_SAMPLE_RATE = env.int("REFRAIN_AUDIO_SAMPLE_RATE", default=44100)
REFRAIN_AUDIO_TARGET_LUFS = env.float("REFRAIN_AUDIO_TARGET_LUFS", default=-16)
REFRAIN_AUDIO_PEAK_CEILING_DBFS = env.float("REFRAIN_AUDIO_PEAK_CEILING_DBFS", default=-1.5)
# While a render is pending the audio endpoint answers 202 with this Retry-After (seconds).
REFRAIN_AUDIO_RETRY_AFTER = env.int("REFRAIN_AUDIO_RETRY_AFTER", default=5)
# A render still pending after this long is assumed lost (purged queue, dead worker) and re-enqueued.
REFRAIN_AUDIO_PENDING_TIMEOUT = env.int("REFRAIN_AUDIO_PENDING_TIMEOUT", default=15 * 60)

# --- Generation (generation.services, generation.tasks) ---
GENERATION_MAX_COUNT = env.int("GENERATION_MAX_COUNT", default=16)  # melodies per job
GENERATION_MAX_BATCH_JOBS = env.int("GENERATION_MAX_BATCH_JOBS", default=64)  # jobs decoded in one pass
GENERATION_BATCH_WAIT_MS = env.int("GENERATION_BATCH_WAIT_MS", default=20)  # let a burst of jobs gather
# A running job holds a lease, renewed while it runs; once it lapses (a dead worker) the job is retaken.
GENERATION_LEASE_SECONDS = env.int("GENERATION_LEASE_SECONDS", default=60)
GENERATION_PENDING_STALE_SECONDS = env.int("GENERATION_PENDING_STALE_SECONDS", default=30)  # re-wake pending jobs after
GENERATION_DEVICE = env.str("GENERATION_DEVICE", default="")  # "" = CUDA when available, else CPU
GENERATION_CPU_THREADS = env.int("GENERATION_CPU_THREADS", default=1)  # torch intra-op threads on a CPU worker
# On CUDA, decode by replaying CUDA graphs: "bf16" (fastest; measured 5.8 ms per melody and 380,000
# melodies/s on an H100), "fp32" (token-exact with the step-by-step loop) or "off".
GENERATION_GPU_DECODE = env.str("GENERATION_GPU_DECODE", default="bf16")
if GENERATION_GPU_DECODE not in ("bf16", "fp32", "off"):
    raise ImproperlyConfigured("GENERATION_GPU_DECODE must be bf16, fp32 or off.")
CELERY_BEAT_SCHEDULE = {
    "generation-recover-stale-jobs": {"task": "generation.tasks.recover_generation_jobs", "schedule": 60.0},
    "catalog-prune-orphan-files": {"task": "catalog.tasks.prune_orphan_files", "schedule": 24 * 3600.0},
    "catalog-recover-pending-renders": {"task": "catalog.tasks.recover_pending_renders", "schedule": 300.0},
    # The feed's learned models (recommend.model_services). A listener's own new ratings need neither:
    # they are folded in at request time; a refit brings them into everyone else's feed.
    "recommend-refit-collaborative": {
        "task": "recommend.tasks.refit_collaborative",
        "schedule": env.float("REFRAIN_COLLABORATIVE_REFIT_SECONDS", default=15 * 60.0),
    },
    "recommend-train-ranker": {
        "task": "recommend.tasks.train_ranker",
        "schedule": env.float("REFRAIN_RANKER_TRAIN_SECONDS", default=24 * 3600.0),
    },
}

# --- Recommendation (recommend.services, recommend.selectors) ---
# The FAISS index of each model version lives in REFRAIN_INDEX_DIR/v<id>. Unset: `index/` next to
# MEDIA_ROOT (var/index by default), so tests and their workers get their own.
REFRAIN_INDEX_DIR = env.str("REFRAIN_INDEX_DIR", default="") or None
REFRAIN_INDEX_USE_GPU = env.bool("REFRAIN_INDEX_USE_GPU", default=True)  # only where faiss has a GPU
REFRAIN_INDEX_LOCK_TIMEOUT = env.int("REFRAIN_INDEX_LOCK_TIMEOUT", default=60)  # seconds to wait for the writer lock
# Index changes are logged in the database and each host's folder follows the log (index_sync). The
# worker that logs a change applies it to its own folder at once; set False on a worker whose folder
# no web process reads (a host of its own): the hosts' `manage.py index_sync --follow` apply it.
REFRAIN_INDEX_SYNC_ON_WRITE = env.bool("REFRAIN_INDEX_SYNC_ON_WRITE", default=True)
REFRAIN_EMBED_MAX_WINDOWS = env.int("REFRAIN_EMBED_MAX_WINDOWS", default=64)  # windows pooled per track, at most
REFRAIN_FEED_SIZE = env.int("REFRAIN_FEED_SIZE", default=200)  # ranked tracks per feed (then paginated)
REFRAIN_FEED_GENERATED_TARGET = env.int("REFRAIN_FEED_GENERATED_TARGET", default=8)  # unrated generated tracks wanted

# --- Robustness: outages, proxies, error answers (config/failsafe.py, config/throttling.py) ---
# Kept as one block on purpose; see README, "Policies".
MIDDLEWARE = [
    *MIDDLEWARE,
    "config.throttling.AdminLoginThrottleMiddleware",  # after AuthenticationMiddleware: needs request.user
    "config.failsafe.DatabaseUnavailableMiddleware",  # innermost: sees the views' exceptions first
]
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "config.api.JSONParser",  # deep nesting is a 400, not a RecursionError
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]
# Proxies in front of the app that append to X-Forwarded-For. 0: trust no such header (the client's
# address is REMOTE_ADDR); unset, DRF would trust whatever the client sent and throttles could be dodged.
REST_FRAMEWORK["NUM_PROXIES"] = env.int("NUM_PROXIES", default=0)
# Throttle scopes that refuse (503) rather than let requests through when their cache is down.
THROTTLE_FAIL_CLOSED_SCOPES = env.list("THROTTLE_FAIL_CLOSED_SCOPES", default=["auth"])
THROTTLE_CACHE_RETRY_SECONDS = env.int(
    "THROTTLE_CACHE_RETRY_SECONDS", default=5
)  # leave a failed cache alone this long
if CACHES["default"]["BACKEND"].endswith("RedisCache"):
    # A Redis that times out instead of refusing must not hold every request for the OS's TCP timeout.
    CACHES["default"].setdefault("OPTIONS", {}).update(socket_connect_timeout=0.5, socket_timeout=0.5)
REFRAIN_DATABASE_RETRY_AFTER = env.int("REFRAIN_DATABASE_RETRY_AFTER", default=30)  # Retry-After of a database 503
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",  # the default
    "config.schema.add_error_responses",  # 429 and 503 on every endpoint, in the error shape
]

# --- Web pages for listeners (web/: server-rendered Django + htmx, the same services as the API) ---
INSTALLED_APPS = [*INSTALLED_APPS, "django_htmx", "web"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "django_htmx.middleware.HtmxMiddleware",
)
LOGIN_URL = "web:sign-in"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "web:home"
REFRAIN_WEB_PAGE_SIZE = env.int("REFRAIN_WEB_PAGE_SIZE", default=10)  # feed items per page (browse: twice that)
# The taste map draws at most this many catalog tracks as its background cloud (an even sample beyond).
REFRAIN_TASTE_MAP_POINTS = env.int("REFRAIN_TASTE_MAP_POINTS", default=3000)
