"""Test settings: the same back ends as configured (SQLite/filesystem by default, or the
DATABASE_URL/CELERY_BROKER_URL given), isolated runtime folders, fast hashing."""

import tempfile
from pathlib import Path

from .base import *
from .base import DATABASES, REST_FRAMEWORK
from .base import SECRET_KEY as _SECRET_KEY
from .env import env

SECRET_KEY = _SECRET_KEY or "refrain-test-key"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="refrain-static-"))
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default="") or tempfile.mkdtemp(prefix="refrain-media-"))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so that a real Celery worker process sees the test database.
    DATABASES["default"]["TEST"] = {
        # One file per test run: concurrent runs on one machine must not share a database.
        "NAME": env.str("REFRAIN_TEST_SQLITE", default="")
        or str(Path(tempfile.mkdtemp(prefix="refrain-db-")) / "test.sqlite3")
    }
# Throttling has its own tests; elsewhere the suite must not trip over it.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        "anon": "100000/min",
        "user": "100000/min",
        "auth": "100000/min",
        "generation": "100000/min",
    },
}

# A real worker started by the tests must see the test database and the test files: the tests
# pass these to its environment (tests/conftest.py, fixture `celery_worker`).
if env.str("REFRAIN_TEST_DB_NAME", default=""):
    DATABASES["default"]["NAME"] = env.str("REFRAIN_TEST_DB_NAME")

# Never share a broker folder with a `make run` worker, which would take the tests' tasks.
from .base import CELERY_BROKER_URL, filesystem_transport_options  # noqa: E402

if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = Path(env.str("REFRAIN_TEST_BROKER_DIR", default="") or tempfile.mkdtemp(prefix="refrain-broker-"))
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_transport_options(BROKER_DIR)
