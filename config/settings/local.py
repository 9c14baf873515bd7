"""Developer machine: `make run`. Debug on, a fixed insecure key unless one is given."""

from .base import *
from .base import SECRET_KEY as _SECRET_KEY

DEBUG = True
SECRET_KEY = _SECRET_KEY or "refrain-local-development-key-not-for-production"
