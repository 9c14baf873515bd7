"""docker/compose.yaml describes the whole platform (validated fully by `make compose-config`
where docker compose is installed; this checks the parts a deployment relies on, everywhere)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_has_every_service_with_a_health_check():
    compose = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"api", "index-sync", "worker-cpu", "worker-gpu", "beat", "flower", "postgres", "redis"}
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert "gunicorn" in services["api"]["command"]
    # Each web host's index folder is fed from the database by its own follower, not shared.
    assert "index:/var/lib/refrain/index" in services["api"]["volumes"]
    assert services["index-sync"]["volumes"] == services["api"]["volumes"]
    assert "index_sync --follow" in services["index-sync"]["command"]
    assert "-Q gpu,gpu-bulk -P solo" in services["worker-gpu"]["command"]  # interactive first, then bulk
    devices = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["worker-gpu"]["build"]["target"] == "worker-gpu"


def test_the_app_image_collects_the_static_files_whitenoise_serves():
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    assert "collectstatic --noinput" in dockerfile and "STATIC_ROOT=/app/staticfiles" in dockerfile


def test_requirements_are_pinned():
    for name in ("base.txt", "gpu.txt", "dev.txt"):
        for line in (ROOT / "requirements" / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-r"):
                assert "==" in line, f"{name}: {line} is not pinned"
