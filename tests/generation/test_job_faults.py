"""Generation jobs when parts fail: a broker outage, a client's retries, a worker killed mid-job."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from generation import job_runner, services, tasks
from generation.models import GenerationJob

pytestmark = pytest.mark.django_db

URL = "/api/v1/generations/"


@pytest.fixture
def woken(monkeypatch):
    sent = []
    monkeypatch.setattr(
        services, "generation_job_wake", lambda job_id, countdown=None: sent.append((job_id, countdown))
    )
    return sent


def test_a_broker_outage_still_answers_202_and_the_job_runs_once_recovered(
    user_client, model_version, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """The job row is the truth: the lost wake-up is logged, and recovery wakes the pending job."""

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_generation_task, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(URL, {"kind": "sample", "count": 1}, format="json")
    assert response.status_code == 202, response.content
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.status == "pending" and GenerationJob.objects.count() == 1

    sent = []
    monkeypatch.setattr(tasks.run_generation_task, "apply_async", lambda args, countdown=None: sent.append(args[0]))
    settings.GENERATION_PENDING_STALE_SECONDS = 0
    assert services.generation_jobs_recover() == 1 and sent == [job.pk]
    job_runner.generation_jobs_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "done" and job.tracks.count() == 1


def test_a_retry_with_the_same_idempotency_key_returns_the_first_job(
    user_client, model_version, woken, django_capture_on_commit_callbacks
):
    body = {"kind": "sample", "count": 2, "temperature": 0.7}
    with django_capture_on_commit_callbacks(execute=True):
        first = user_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
        again = user_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry-1")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert GenerationJob.objects.count() == 1 and len(woken) == 1
    other = user_client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry-2")
    assert other.json()["id"] != first.json()["id"] and GenerationJob.objects.count() == 2


def test_an_idempotency_key_reused_for_another_request_is_refused(user_client, model_version, woken):
    user_client.post(URL, {"kind": "sample", "count": 2}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    response = user_client.post(URL, {"kind": "sample", "count": 3}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409 and response.json()["error"]["code"] == "idempotency_key_reused"
    too_long = user_client.post(URL, {"kind": "sample"}, format="json", HTTP_IDEMPOTENCY_KEY="x" * 129)
    assert too_long.status_code == 400
    assert GenerationJob.objects.count() == 1


def test_keys_belong_to_their_owner(user_client, other_client, model_version, woken):
    mine = user_client.post(URL, {"kind": "sample"}, format="json", HTTP_IDEMPOTENCY_KEY="same")
    theirs = other_client.post(URL, {"kind": "sample"}, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_redelivered_message_for_a_held_job_looks_again_when_the_lease_lapses(user, model_version, woken):
    """Worker A was killed while decoding; its message reaches worker B while A's lease still runs.
    B must not drop it (the job would stay "running" until beat's sweep) but look again then."""
    job = services.generation_job_create(owner=user, kind="sample", params={})
    woken.clear()
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running", lease_expires_at=timezone.now() + timedelta(seconds=40)
    )
    assert job_runner.generation_jobs_run(job_id=job.pk).jobs == 0
    assert len(woken) == 1 and woken[0][0] == job.pk and 35 < woken[0][1] <= 42
    GenerationJob.objects.filter(pk=job.pk).update(status="done", lease_expires_at=None)
    assert job_runner.generation_jobs_run(job_id=job.pk).jobs == 0 and len(woken) == 1  # a plain duplicate


@pytest.mark.django_db(transaction=True)
def test_a_running_job_keeps_renewing_its_lease(user, model_version, settings):
    settings.GENERATION_LEASE_SECONDS = 0.6
    job = services.generation_job_create(owner=user, kind="sample", params={})
    GenerationJob.objects.filter(pk=job.pk).update(status="running", batch_id=None)
    job.refresh_from_db()
    before = timezone.now()
    with job_runner.LeaseKeeper(job_ids=[job.pk], batch_id=None) as keeper:
        deadline = time.monotonic() + 10
        while keeper.renewals < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    job.refresh_from_db()
    assert keeper.renewals >= 2
    assert job.lease_expires_at is not None and job.lease_expires_at > before


def test_both_track_id_and_track_ids_is_a_400_not_a_silent_choice(user_client, model_version, track_factory, woken):
    a, b = track_factory(), track_factory()
    body = {"kind": "steer", "track_id": a.pk, "track_ids": [b.pk], "attribute": "register", "amount": 1}
    response = user_client.post(URL, body, format="json")
    assert response.status_code == 400 and "track_ids" in response.json()["error"]["fields"]
    assert not GenerationJob.objects.exists()
