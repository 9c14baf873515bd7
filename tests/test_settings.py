"""Settings: production refuses to start without its secrets or on single-process back ends, passes
`check --deploy`; every variable is parsed strictly and documented in the README."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(60),
    "ALLOWED_HOSTS": "refrain.example.com",
    "DATABASE_URL": "postgres://refrain@db.example.com:5432/refrain",
    "CACHE_URL": "redis://cache.example.com:6379/1",
}


def run_manage(*args: str, settings: str = "config.settings.production", **env: str) -> subprocess.CompletedProcess:
    drop = {
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
        "CACHE_URL",
        "REFRAIN_ALLOW_SQLITE",
        "REFRAIN_ALLOW_LOCAL_CACHE",
    }
    environment = {k: v for k, v in os.environ.items() if k not in drop}
    environment.update(env, DJANGO_SETTINGS_MODULE=settings)
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=environment, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.mark.parametrize(
    "drop, override, missing",
    [
        ("SECRET_KEY", {}, "SECRET_KEY"),
        ("", {"SECRET_KEY": "short"}, "SECRET_KEY"),
        ("ALLOWED_HOSTS", {}, "ALLOWED_HOSTS"),
        ("DATABASE_URL", {}, "REFRAIN_ALLOW_SQLITE"),
        ("CACHE_URL", {}, "REFRAIN_ALLOW_LOCAL_CACHE"),
    ],
)
def test_production_refuses_to_start_without_what_it_needs(drop, override, missing):
    env = {k: v for k, v in PRODUCTION.items() if k != drop} | override
    result = run_manage("check", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_production_runs_on_sqlite_and_a_local_cache_only_when_told_to():
    env = {k: v for k, v in PRODUCTION.items() if k not in ("DATABASE_URL", "CACHE_URL")}
    result = run_manage("check", REFRAIN_ALLOW_SQLITE="true", REFRAIN_ALLOW_LOCAL_CACHE="true", **env)
    assert result.returncode == 0, result.stderr


def test_production_check_deploy_has_no_warnings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("name, value", [("DEBUG", "ture"), ("GENERATION_LEASE_SECONDS", "five")])
def test_a_value_that_does_not_parse_is_an_error_naming_the_variable(name, value):
    result = run_manage("check", settings="config.settings.local", **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr


def _variables_read_by_the_code() -> set[str]:
    names = set()
    pattern = re.compile(
        r"""env\.\w+\(\s*["']([A-Z][A-Z0-9_]+)["']|os\.environ(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    for path in ROOT.glob("**/*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0].startswith(".") or parts[0] in ("tests", "bench", "var", "runs") or "migrations" in parts:
            continue
        for match in pattern.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names - {"DJANGO_SETTINGS_MODULE", "OMP_NUM_THREADS"}  # set by the code itself, for itself


def test_the_readme_lists_every_variable_the_code_reads():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration (environment)", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    read = _variables_read_by_the_code()
    assert len(read) > 30  # the scan itself works
    assert sorted(read - documented) == []


def test_on_redis_a_gpu_worker_takes_generation_jobs_before_bulk_embeddings():
    code = "from django.conf import settings; print(settings.CELERY_BROKER_TRANSPORT_OPTIONS)"
    result = run_manage(
        "shell", "-c", code, settings="config.settings.local", CELERY_BROKER_URL="redis://127.0.0.1:6379/0"
    )
    assert result.returncode == 0, result.stderr
    assert "'queue_order_strategy': 'priority'" in result.stdout
