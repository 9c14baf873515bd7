"""Domain events: delivered after commit, never for a rolled-back write, one failing receiver
isolated from the others; and the app-level events the catalog and generation send."""

import logging

import pytest
from django.db import transaction

from catalog import events as catalog_events
from catalog import services as catalog_services
from config.events import DomainEvent
from generation import events as generation_events
from generation import services as generation_services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorded():
    """Record what each app event delivers, beside the real receivers."""
    calls = []
    connected = []
    for event in (
        catalog_events.tracks_created,
        catalog_events.tracks_deleted,
        generation_events.model_version_activated,
    ):
        uid = f"test.{event.name}"
        event.connect(lambda _e=event, **payload: calls.append((_e.name, payload)), dispatch_uid=uid)
        connected.append((event, uid))
    yield calls
    for event, uid in connected:
        event.disconnect(dispatch_uid=uid)


def test_an_event_is_delivered_after_commit_and_not_after_a_rollback():
    event = DomainEvent("test.thing", payload=("n",))
    got = []
    event.connect(lambda n: got.append(n), dispatch_uid="a")
    with transaction.atomic():
        event.send_on_commit(n=1)
        assert got == []  # not before the commit
    assert got == [1]
    with pytest.raises(RuntimeError), transaction.atomic():
        event.send_on_commit(n=2)
        raise RuntimeError("rolled back")
    assert got == [1]


def test_a_failing_receiver_is_logged_and_the_others_still_receive(caplog):
    event = DomainEvent("test.thing", payload=("n",))
    got = []

    def broken(n):
        raise ValueError("consumer bug")

    event.connect(broken, dispatch_uid="broken")
    event.connect(lambda n: got.append(n), dispatch_uid="fine")
    with caplog.at_level(logging.ERROR, logger="config.events"):
        event.send_on_commit(n=3)
    assert got == [3]
    assert "receiver broken of event test.thing failed" in caplog.text


def test_the_payload_is_checked_and_a_receiver_is_connected_once_per_uid():
    event = DomainEvent("test.thing", payload=("n",))
    with pytest.raises(TypeError):
        event.send_on_commit(m=1)
    event.connect(lambda n: None, dispatch_uid="x")
    event.connect(lambda n: None, dispatch_uid="x")
    assert len(event.receivers) == 1


def test_recommend_listens_to_the_catalog_and_generation_events():
    """Connected in RecommendConfig.ready(): the producers never import recommend."""
    assert any(r.__module__ == "recommend.receivers" for r in catalog_events.tracks_created.receivers)
    assert any(r.__module__ == "recommend.receivers" for r in catalog_events.tracks_deleted.receivers)
    assert any(r.__module__ == "recommend.receivers" for r in generation_events.model_version_activated.receivers)


def test_ingest_and_delete_announce_the_track(recorded, midi_bytes, monkeypatch):
    from catalog import tasks

    monkeypatch.setattr(tasks.tracks_render_audio_task, "delay", lambda ids: None)
    track = catalog_services.track_ingest(midi_bytes=midi_bytes([60, 62, 64]), title="new").track
    assert recorded == [("catalog.tracks_created", {"track_ids": [track.pk]})]
    catalog_services.track_ingest(midi_bytes=midi_bytes([60, 62, 64]))  # the same bytes: nothing new
    catalog_services.track_ingest(midi_bytes=midi_bytes([65, 67]), process=False)  # bulk import: no event
    assert len(recorded) == 1
    track_id = track.pk
    catalog_services.track_delete(track=track)
    assert recorded[-1] == ("catalog.tracks_deleted", {"track_ids": [track_id]})


def test_activating_a_model_version_announces_it(recorded, tiny_checkpoint, monkeypatch):
    from recommend import tasks

    monkeypatch.setattr(tasks.embed_missing_task, "delay", lambda *a, **k: None)
    version = generation_services.model_version_register(name="v", checkpoint_path=str(tiny_checkpoint))
    assert recorded == [("generation.model_version_activated", {"model_version_id": version.pk})]
