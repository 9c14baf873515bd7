"""Fixtures shared by the whole suite: MIDI bytes made with pretty_midi, users, API clients."""

from __future__ import annotations

import io

import pretty_midi
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def make_midi(
    pitches: list[int] | None = None,
    *,
    step: float = 0.25,
    numerator: int = 4,
    denominator: int = 4,
    tempo: float = 120.0,
    program: int = 0,
    key_number: int | None = None,
) -> bytes:
    """A small, valid monophonic melody as Standard MIDI File bytes."""
    pitches = pitches if pitches is not None else [60, 62, 64, 65, 67, 65, 64, 62]
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, 0.0))
    if key_number is not None:
        pm.key_signature_changes.append(pretty_midi.KeySignature(key_number, 0.0))
    instrument = pretty_midi.Instrument(program=program)
    for i, pitch in enumerate(pitches):
        instrument.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=i * step, end=(i + 1) * step))
    pm.instruments.append(instrument)
    buffer = io.BytesIO()
    pm.write(buffer)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def isolated_media(settings, tmp_path):
    """Each test gets its own MEDIA_ROOT, so leftovers are visible and never shared."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def midi_bytes():
    return make_midi


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="listener", password="a-long-passphrase-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="someone-else", password="a-long-passphrase-2")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="curator", password="a-long-passphrase-3", is_staff=True)


def _client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anon_client():
    return APIClient()


@pytest.fixture
def user_client(user):
    return _client_for(user)


@pytest.fixture
def other_client(other_user):
    return _client_for(other_user)


@pytest.fixture
def staff_client(staff):
    return _client_for(staff)


@pytest.fixture
def track_factory(db, midi_bytes):
    """Ingest a distinct melody per call through the real ingestion service."""
    from catalog import services

    counter = {"n": 0}

    def create(**overrides):
        counter["n"] += 1
        n = counter["n"]
        data = overrides.pop("midi", None) or midi_bytes([60 + (n % 12), 62, 64 + (n % 5), 67, 55 + n % 20])
        overrides.setdefault("title", f"Tune {n}")
        return services.track_ingest(midi_bytes=data, **overrides).track

    return create


@pytest.fixture
def media_files(settings):
    """All files under MEDIA_ROOT (to prove nothing is left behind)."""
    from pathlib import Path

    def files() -> list[Path]:
        root = Path(settings.MEDIA_ROOT)
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    return files


class WorkerHandle:
    """A `celery worker` process started by a test, with its log."""

    def __init__(self, process, log_path):
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition", poll: float = 0.1):
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}) before {what}:\n{self.log()[-3000:]}")
            time.sleep(poll)
        raise AssertionError(f"timed out waiting for {what}; worker log:\n{self.log()[-3000:]}")

    def kill9(self) -> None:
        import signal

        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        import subprocess

        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def start_worker(transactional_db, settings):
    """Start real `celery worker` processes on the configured broker, sharing the test database and
    files; extra keyword arguments become environment variables (settings) of that worker."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from django.db import connection

    started: list[WorkerHandle] = []

    def start(name: str = "test", queues: str = "gpu,gpu-bulk,cpu", **extra_env: str) -> WorkerHandle:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "REFRAIN_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in extra_env.items()},
        }
        if getattr(settings, "BROKER_DIR", None):
            env["REFRAIN_TEST_BROKER_DIR"] = str(settings.BROKER_DIR)
        log_path = Path(settings.MEDIA_ROOT).parent / f"worker-{name}-{len(started)}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queues,
                "-P",
                "solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "INFO",
                "-n",
                f"{name}{len(started)}@%h",
            ],
            env=env,
            stdout=open(log_path, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle = WorkerHandle(process, log_path)
        started.append(handle)
        handle.wait_for(lambda: "ready." in handle.log(), timeout=90, what="worker start-up")
        return handle

    yield start
    for handle in started:
        handle.stop()


@pytest.fixture
def celery_worker(start_worker):
    """One real worker consuming both queues."""
    return start_worker()


# --- a small model registered as the active version (generation and recommendation tests) ---
# Untrained weights still decode to real, varied melodies, which is all the platform tests need;
# the model's quality is tested in tests/generation/vae and measured in generation/checkpoints.


@pytest.fixture
def tiny_checkpoint(tmp_path_factory):
    import torch

    from generation.vae.attributes import ATTRIBUTES
    from generation.vae.checkpoint import save_checkpoint
    from generation.vae.config import MEL_TINY
    from generation.vae.model import MusicVAE

    torch.manual_seed(7)
    cfg = MEL_TINY.with_overrides(
        name="mel_test", seq_len=64, bar_len=16, hierarchical=True, conductor_hidden=32, conductor_dim=16
    )
    model = MusicVAE(cfg)
    vectors = torch.randn(len(ATTRIBUTES), cfg.z_dim)
    path = tmp_path_factory.mktemp("ckpt") / "mel_test.pt"
    save_checkpoint(path, model, attributes={"names": list(ATTRIBUTES), "vectors": vectors})
    return path


@pytest.fixture
def model_version(db, tiny_checkpoint):
    from generation import services

    return services.model_version_register(name="mel_test", checkpoint_path=str(tiny_checkpoint))


@pytest.fixture(scope="session")
def longform_checkpoint(tmp_path_factory):
    """A tiny long-form model: a 2-bar VAE and a codebook latent prior beside it, the kind served
    (its terms and a small table of forms; untrained; the decoder's output bias leans a little towards one note, so that greedy decoding
    writes notes; the codes lie far enough apart that 17 of the 24 sound different, and the head
    draws them about evenly. At the prior's usual spread the untrained decoder rendered all 24 as one
    chunk, and spread out with the head left as initialized, 15 % of two-tune 6/8 jobs drew the same
    tune twice, which the catalog then stores once)."""
    import dataclasses

    import torch

    from generation.vae.attributes import ATTRIBUTES
    from generation.vae.checkpoint import save_checkpoint, save_prior
    from generation.vae.config import MEL_TINY
    from generation.vae.model import MusicVAE
    from generation.vae.prior import PRIOR_TINY_CODES, LatentPrior
    from generation.vae.representation import FIRST_NOTE, MIN_PITCH

    torch.manual_seed(11)
    folder = tmp_path_factory.mktemp("longform")
    vae = MusicVAE(MEL_TINY)
    with torch.no_grad():
        vae.out.bias[FIRST_NOTE + 67 - MIN_PITCH] += 0.5
    vectors = torch.randn(len(ATTRIBUTES), MEL_TINY.z_dim)
    save_checkpoint(folder / "mel_tiny_2bar.pt", vae, attributes={"names": list(ATTRIBUTES), "vectors": vectors})
    prior = LatentPrior(dataclasses.replace(PRIOR_TINY_CODES, codebook=24))
    prior.z_std.fill_(1.0)
    with torch.no_grad():
        prior.code_coords.normal_().mul_(10.0)
        prior.code_query.weight.zero_()  # scores the coordinates: at this spread, a few codes took all
        prior.code_query.bias.zero_()
        prior.code_windows.copy_(vae.generate(prior.code_latents(), greedy=True).to(torch.int8))
    # repeat structures for new 4/4 tunes of 4 chunks (AABA) or more (ABAC...); other meters' are the pointer's
    forms = {
        "meters": [[4, 4], [4, 4]],
        "lengths": [4, 8],
        "pointers": [[-1, 0, -1, 0], [-1, -1, 0, -1, -1, -1, 0, -1]],
    }
    metrics = {"served_temperature": 0.9, "forms": forms}
    return save_prior(folder / "prior.pt", prior, vae="mel_tiny_2bar.pt", metrics=metrics)


@pytest.fixture
def longform_version(db, longform_checkpoint):
    from generation import services

    return services.model_version_register(name="longform_test", checkpoint_path=str(longform_checkpoint))


@pytest.fixture(autouse=True)
def fresh_cache():
    """Throttle counters and the feed's top-up guard live in the cache: no test sees another's."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def put_embeddings():
    """Store chosen vectors as embeddings (no VAE), then rebuild the version's index."""
    from recommend import services
    from recommend.models import TrackEmbedding, vector_to_bytes

    def put(model_version, vectors: dict, rebuild: bool = True):
        import numpy as np

        for track, vector in vectors.items():
            vector = np.asarray(vector, dtype=np.float32)
            TrackEmbedding.objects.update_or_create(
                track=track,
                model_version=model_version,
                defaults={"vector": vector_to_bytes(vector), "dim": len(vector), "sigma_mean": 0.1},
            )
        if rebuild:
            services.index_rebuild(model_version=model_version)

    return put
