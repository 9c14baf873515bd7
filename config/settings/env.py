"""The environment, read with django-environ, strictly: a value that does not parse is an error that
names the variable (django-environ alone reads "ture" as False and says nothing)."""

from __future__ import annotations

from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


class StrictEnv(environ.Env):
    def bool(self, var: str, default: Any = environ.Env.NOTSET) -> bool:  # type: ignore[override]
        raw = self.str(var, default="" if default is environ.Env.NOTSET else str(default))
        if raw == "" and default is environ.Env.NOTSET:
            raise ImproperlyConfigured(f"Set the {var} environment variable (true or false).")
        value = raw.strip().lower()
        if value in TRUE:
            return True
        if value in FALSE:
            return False
        raise ImproperlyConfigured(f"{var}={raw!r} is not a boolean: use one of {', '.join(TRUE + FALSE[:-1])}.")

    def get_value(self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(f"{var} has a value that cannot be read: {exc}") from exc


env = StrictEnv()
