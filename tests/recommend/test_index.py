"""The index behind similar tracks and feeds: add/remove through services, rebuild from the database."""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from catalog import services as catalog_services
from recommend import index_readers, selectors, services
from recommend.index import IndexStore

pytestmark = pytest.mark.django_db


def indexed_ids(model_version) -> set[int]:
    return set(index_readers.index_reader(model_version_id=model_version.pk).index.ids().tolist())


def test_index_add_and_remove_through_services(model_version, embedded_tracks, track_factory):
    tracks = embedded_tracks(4)
    assert indexed_ids(model_version) == {t.pk for t in tracks}
    new = track_factory()
    services.track_embed_batch(track_ids=[new.pk], model_version=model_version)
    version_before = IndexStore(index_readers.index_dir(model_version.pk)).current_version()
    assert services.index_add(track_ids=[new.pk], model_version=model_version) == 1
    assert IndexStore(index_readers.index_dir(model_version.pk)).current_version() == version_before + 1
    assert new.pk in indexed_ids(model_version)  # the process's reader reloaded the new version
    assert services.index_remove(track_ids=[tracks[0].pk, 10**9]) == 1
    assert indexed_ids(model_version) == {t.pk for t in tracks[1:]} | {new.pk}


def test_index_add_without_an_index_builds_it_from_the_database(model_version, track_factory):
    tracks = [track_factory() for _ in range(3)]
    services.track_embed_batch(track_ids=[t.pk for t in tracks], model_version=model_version)
    assert services.index_add(track_ids=[tracks[0].pk], model_version=model_version) == 3
    assert indexed_ids(model_version) == {t.pk for t in tracks}


def test_the_index_lives_in_its_versions_folder(model_version, embedded_tracks, settings, tmp_path):
    embedded_tracks(2)
    assert (index_readers.index_dir(model_version.pk) / "manifest.json").exists()
    assert index_readers.index_dir(model_version.pk).name == f"v{model_version.pk}"
    settings.REFRAIN_INDEX_DIR = str(tmp_path / "elsewhere")
    assert index_readers.index_dir(7) == tmp_path / "elsewhere" / "v7"


def test_rebuild_gives_the_same_results_as_the_incremental_index(model_version, track_factory):
    tracks = [track_factory() for _ in range(12)]
    for track in tracks:  # one at a time, as the embed task does on each upload
        services.track_embed_batch(track_ids=[track.pk], model_version=model_version)
        services.index_add(track_ids=[track.pk], model_version=model_version)
    deleted = tracks[3].pk
    catalog_services.track_delete(track=tracks[3])
    services.index_remove(track_ids=[deleted])
    reader = index_readers.index_reader(model_version_id=model_version.pk)
    _, vectors = selectors.embedding_matrix(model_version=model_version)
    incremental = reader.search(vectors, 5)
    out = StringIO()
    call_command("rebuild_index", stdout=out)
    assert "indexed 11 tracks" in out.getvalue()
    rebuilt = reader.search(vectors, 5)  # the reader picked up the rebuilt version
    assert reader.version > 0
    np.testing.assert_array_equal(incremental.ids, rebuilt.ids)
    np.testing.assert_allclose(incremental.scores, rebuilt.scores, rtol=1e-5, atol=1e-6)


def test_rebuild_index_command_without_embeddings(model_version):
    out = StringIO()
    call_command("rebuild_index", stdout=out)
    assert "no embeddings yet" in out.getvalue()


def test_deleting_a_track_enqueues_its_removal_from_the_index(
    model_version, embedded_tracks, monkeypatch, django_capture_on_commit_callbacks
):
    from recommend import tasks

    tracks = embedded_tracks(3)
    deleted = tracks[0].pk
    sent = []
    monkeypatch.setattr(tasks.index_remove_tracks_task, "delay", lambda ids: sent.append(ids))
    with django_capture_on_commit_callbacks(execute=True):
        catalog_services.track_delete(track=tracks[0])
    assert sent == [[deleted]]
    tasks.index_remove_tracks_task(sent[0])
    assert deleted not in indexed_ids(model_version)


def test_rebuild_writes_what_the_database_holds_over_a_stale_index(model_version, track_factory, put_embeddings):
    """A rebuild replaces whatever the index has drifted to with the database's embeddings, as a new
    version that a fresh reader (another process) opens."""
    tracks = [track_factory() for _ in range(5)]
    services.track_embed_batch(track_ids=[t.pk for t in tracks], model_version=model_version)
    services.index_add(track_ids=[t.pk for t in tracks], model_version=model_version)  # no index yet: built
    store = IndexStore(index_readers.index_dir(model_version.pk))
    before = store.current_version()
    # The index drifts from the database: a track lost from the index only, and an embedding
    # replaced in the database only.
    services.index_remove(track_ids=[tracks[0].pk], model_version=model_version)
    dim = store.manifest().dim
    moved = np.arange(1, dim + 1, dtype=np.float32)
    put_embeddings(model_version, {tracks[1]: moved}, rebuild=False)
    stale, _ = store.load()
    assert tracks[0].pk not in stale.ids()

    assert services.index_rebuild(model_version=model_version) == 5
    assert store.current_version() == before + 2  # the removal, then the rebuild
    fresh, version = IndexStore(index_readers.index_dir(model_version.pk)).load()
    assert version == store.current_version()
    ids, vectors = fresh.export()
    db_ids, db_vectors = selectors.embedding_matrix(model_version=model_version)
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], db_ids)
    unit = db_vectors / np.linalg.norm(db_vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[order], unit, rtol=1e-5, atol=1e-6)
    nearest = fresh.search(moved[None, :], 1)
    assert nearest.ids[0][0] == tracks[1].pk
