"""Model versions: registration, exactly one active, the demo checkpoint on first use."""

from __future__ import annotations

import pytest
import torch
from django.core.management import call_command
from django.db import IntegrityError, transaction

from config.errors import ApplicationError
from generation import selectors, services
from generation.models import ModelVersion
from generation.vae.checkpoint import save_checkpoint
from generation.vae.config import MEL_TINY
from generation.vae.model import MusicVAE

pytestmark = pytest.mark.django_db


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "tiny.pt", MusicVAE(MEL_TINY), metrics={"valid_accuracy": 0.5})


def test_register_reads_config_and_metrics_from_the_checkpoint(checkpoint):
    version = services.model_version_register(name="tiny", checkpoint_path=str(checkpoint))
    assert version.is_active
    assert version.config["name"] == "mel_tiny"
    assert version.metrics == {"valid_accuracy": 0.5}
    assert selectors.model_version_active() == version


def test_exactly_one_version_is_active(checkpoint):
    a = services.model_version_register(name="a", checkpoint_path=str(checkpoint))
    b = services.model_version_register(name="b", checkpoint_path=str(checkpoint))
    assert list(ModelVersion.objects.filter(is_active=True)) == [b]
    services.model_version_activate(model_version=a)
    assert list(ModelVersion.objects.filter(is_active=True)) == [a]
    c = services.model_version_register(name="c", checkpoint_path=str(checkpoint), activate=False)
    assert not c.is_active and selectors.model_version_active() == a


def test_the_database_refuses_a_second_active_version(checkpoint):
    services.model_version_register(name="a", checkpoint_path=str(checkpoint))
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(name="b", checkpoint_path=str(checkpoint), is_active=True)


def test_missing_or_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(ApplicationError, match="not found"):
        services.model_version_register(name="x", checkpoint_path=str(tmp_path / "missing.pt"))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(ApplicationError, match="not a Refrain"):
        services.model_version_register(name="x", checkpoint_path=str(foreign))
    assert not ModelVersion.objects.exists()


def test_default_model_is_registered_once_and_only_when_none_is_active():
    call_command("register_default_model")
    call_command("register_default_model")
    version = selectors.model_version_active()
    assert version is not None and version.checkpoint_path == services.default_checkpoint()[1]
    assert ModelVersion.objects.count() == 1
    assert selectors.model_version_checkpoint_file(model_version=version).is_file()
    assert services.model_version_ensure_active() == version


def test_default_model_does_not_replace_an_active_version(checkpoint):
    mine = services.model_version_register(name="mine", checkpoint_path=str(checkpoint))
    assert services.model_version_register_default() == mine
    assert ModelVersion.objects.count() == 1


def test_train_model_command_trains_and_registers_an_active_version(tmp_path):
    from tests.generation.vae.conftest import write_melody

    data = tmp_path / "midi"
    data.mkdir()
    for i in range(12):
        write_melody(
            data / f"t{i}.mid", [60 + (k * (i + 1)) % 12 for k in range(24)], meter=[(4, 4), (3, 4), (6, 8)][i % 3]
        )
    out = tmp_path / "run"
    call_command(
        "train_model",
        "--config",
        "mel_tiny",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--threads",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--name",
        "smoke",
    )
    version = selectors.model_version_active()
    assert version.name == "smoke" and version.config["name"] == "mel_tiny"
    assert (out / "model.pt").is_file() and (out / "report.json").is_file() and (out / "curves.png").is_file()
    assert "valid" in version.metrics


def test_activating_a_version_queues_the_catalogs_reembedding(
    checkpoint, monkeypatch, django_capture_on_commit_callbacks
):
    from recommend import tasks as recommend_tasks

    sent = []
    monkeypatch.setattr(recommend_tasks.embed_missing_task, "delay", lambda *a, **k: sent.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        version = services.model_version_register(name="v", checkpoint_path=str(checkpoint))
    assert version.is_active and len(sent) == 1
