"""Production: refuses to start without its secrets or on back ends that only suit one process;
`manage.py check --deploy` is clean."""

from django.core.exceptions import ImproperlyConfigured

from .base import *
from .base import CACHES, DATABASES
from .env import env

SECRET_KEY = env.str("SECRET_KEY", default="")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be set to a random string of at least 50 characters.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names this site is served under.")

# SQLite serialises every write through one file lock and lives on one host; a per-process cache
# makes every throttle and the generated feed's top-up guard count per process (3 gunicorn workers
# = 3x the rate). Either is allowed only when a flag says it is meant (a single-host demo).
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and not env.bool("REFRAIN_ALLOW_SQLITE", default=False):
    raise ImproperlyConfigured(
        "Production needs a DATABASE_URL of a real database (postgres://...); "
        "set REFRAIN_ALLOW_SQLITE=true to run on SQLite on purpose."
    )
if CACHES["default"]["BACKEND"].endswith("LocMemCache") and not env.bool("REFRAIN_ALLOW_LOCAL_CACHE", default=False):
    raise ImproperlyConfigured(
        "Production needs a shared cache: set CACHE_URL=redis://... (throttles and the feed's top-up guard "
        "live there); set REFRAIN_ALLOW_LOCAL_CACHE=true to keep them per process on purpose."
    )

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes inside the cluster speak plain HTTP
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# HSTS is rolled out as cookiecutter-django does: 60 seconds at first, raised on purpose (to a year,
# SECURE_HSTS_SECONDS=31536000) once HTTPS is known to work everywhere, because browsers remember it
# and a mistake then locks users out for as long as the value says.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
