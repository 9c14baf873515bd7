"""Many hosts: each keeps its own index folder, fed from the change log in the database; two hosts
converge to the same tracks and the same answers. An unreadable folder is rebuilt, never a 500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catalog import services as catalog_services
from recommend import index_readers, selectors, services
from recommend.index import IndexStore
from recommend.models import IndexChange

REPO_ROOT = Path(__file__).resolve().parents[2]

# A web host: its own REFRAIN_INDEX_DIR; on each line from stdin it syncs its folder from the log
# (what `manage.py index_sync --follow` does) and reports what its process reader serves.
HOST_SCRIPT = """
import json, sys
import django
django.setup()
import numpy as np
from generation.models import ModelVersion
from recommend import index_readers, services

version = ModelVersion.objects.get(pk=int(sys.argv[1]))
queries = np.array(json.loads(sys.argv[2]), dtype=np.float32)
for line in sys.stdin:
    written = services.index_sync(model_version=version)
    index = index_readers.index_reader(model_version_id=version.pk).index
    found = index.search(queries, 5)
    print(json.dumps({"ids": sorted(index.ids().tolist()), "top": found.ids.tolist(), "written": written}), flush=True)
"""


def unit(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=16).astype(np.float32)


class Host:
    def __init__(self, folder: Path, model_version, queries: np.ndarray, settings) -> None:
        from django.db import connection

        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "REFRAIN_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "REFRAIN_INDEX_DIR": str(folder),
            "PYTHONPATH": str(REPO_ROOT),
            "OMP_NUM_THREADS": "1",
        }
        self.folder = folder
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOST_SCRIPT, str(model_version.pk), json.dumps(queries.tolist())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )

    def sync(self) -> dict:
        self.process.stdin.write("sync\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the host process died"
        return json.loads(line)

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture
def hosts(settings, tmp_path):
    started: list[Host] = []

    def start(name: str, model_version, queries) -> Host:
        host = Host(tmp_path / f"host-{name}", model_version, queries, settings)
        started.append(host)
        return host

    yield start
    for host in started:
        host.process.kill()


@pytest.mark.django_db(transaction=True)
def test_two_hosts_with_their_own_folders_converge(model_version, track_factory, put_embeddings, hosts, settings):
    tracks = [track_factory() for _ in range(30)]
    put_embeddings(model_version, {t: unit(i) for i, t in enumerate(tracks)}, rebuild=False)
    services.index_add(track_ids=[t.pk for t in tracks], model_version=model_version)  # the worker's host
    queries = np.stack([unit(100 + i) for i in range(6)])

    a = hosts("a", model_version, queries)
    first = a.sync()  # no folder yet: built from the database
    assert first["written"] == 30 and first["ids"] == sorted(t.pk for t in tracks)

    # More happens while host b is not even up: uploads, a deletion, a re-embedding.
    new = [track_factory() for _ in range(5)]
    put_embeddings(model_version, {t: unit(50 + i) for i, t in enumerate(new)}, rebuild=False)
    services.index_add(track_ids=[t.pk for t in new], model_version=model_version)
    gone = [tracks[0].pk, new[0].pk]
    for track in (tracks[0], new[0]):
        catalog_services.track_delete(track=track)
    services.index_remove(track_ids=gone)
    put_embeddings(model_version, {tracks[1]: queries[0] * 3}, rebuild=False)  # now the best answer to query 0
    services.index_add(track_ids=[tracks[1].pk], model_version=model_version)

    a_state = a.sync()  # one segment over its base
    assert a_state["written"] == 5  # 4 new tracks left + the re-embedded one
    store_a = IndexStore(a.folder / f"v{model_version.pk}")
    assert store_a.manifest().file == "base-000001.faiss" and len(store_a.manifest().segments) == 1
    b = hosts("b", model_version, queries)
    b_state = b.sync()  # rebuilt from the database at once
    assert IndexStore(b.folder / f"v{model_version.pk}").manifest().segments == ()

    assert a_state["ids"] == b_state["ids"] == sorted(selectors.embedding_matrix(model_version=model_version)[0])
    assert a_state["top"] == b_state["top"]
    assert a_state["top"][0][0] == tracks[1].pk
    ids, vectors = selectors.embedding_matrix(model_version=model_version)
    unit_vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = ids[np.argsort(-(queries @ unit_vectors.T), axis=1, kind="stable")[:, :5]]
    assert a_state["top"] == exact.tolist()
    # The worker's own folder followed the same log and agrees.
    local = index_readers.index_reader(model_version_id=model_version.pk).index
    assert sorted(local.ids().tolist()) == a_state["ids"]
    assert a.sync()["written"] == 0 and b.sync()["written"] == 0  # nothing new: nothing written
    a.stop()
    b.stop()


@pytest.mark.django_db
def test_changes_are_logged_in_order_and_a_batch_is_one_change(model_version, track_factory, put_embeddings):
    tracks = [track_factory() for _ in range(4)]
    put_embeddings(model_version, {t: unit(i) for i, t in enumerate(tracks)}, rebuild=False)
    services.index_add(track_ids=[t.pk for t in tracks], model_version=model_version)
    services.index_remove(track_ids=[tracks[0].pk], model_version=model_version)
    log = list(IndexChange.objects.order_by("seq").values_list("seq", "removed", "track_ids"))
    assert log == [(1, False, sorted(t.pk for t in tracks)), (2, True, [tracks[0].pk])]
    manifest = IndexStore(index_readers.index_dir(model_version.pk)).manifest()
    assert manifest.meta["change_seq"] == 2
    # Removed though its embedding is still there (the removal is the log's word, not a guess).
    assert tracks[0].pk not in index_readers.index_reader(model_version_id=model_version.pk).index.ids()


@pytest.mark.django_db
def test_a_folder_behind_a_pruned_log_is_rebuilt(model_version, track_factory, put_embeddings, settings):
    tracks = [track_factory() for _ in range(4)]
    put_embeddings(model_version, {t: unit(i) for i, t in enumerate(tracks)}, rebuild=False)
    services.index_add(track_ids=[tracks[0].pk], model_version=model_version)
    settings.REFRAIN_INDEX_SYNC_ON_WRITE = False  # this host falls behind...
    services.index_add(track_ids=[tracks[1].pk], model_version=model_version)
    services.index_add(track_ids=[tracks[2].pk], model_version=model_version)
    IndexChange.objects.filter(seq=2).delete()  # ...past what the log still holds
    services.index_sync(model_version=model_version)
    store = IndexStore(index_readers.index_dir(model_version.pk))
    assert store.manifest().segments == () and store.manifest().meta["change_seq"] == 3
    assert sorted(store.load()[0].ids().tolist()) == sorted(t.pk for t in tracks)


@pytest.mark.django_db
@pytest.mark.parametrize("damage", ["truncate_base", "drop_segment", "garble_manifest"])
def test_an_unreadable_index_is_rebuilt_by_the_next_add(model_version, track_factory, put_embeddings, damage):
    tracks = [track_factory() for _ in range(6)]
    put_embeddings(model_version, {t: unit(i) for i, t in enumerate(tracks[:5])})
    put_embeddings(model_version, {tracks[4]: unit(40)}, rebuild=False)
    services.index_add(track_ids=[tracks[4].pk], model_version=model_version)
    folder = index_readers.index_dir(model_version.pk)
    manifest = IndexStore(folder).manifest()
    if damage == "truncate_base":
        (folder / manifest.file).write_bytes(b"\0" * 10)
    elif damage == "drop_segment":
        (folder / manifest.segments[0].file).unlink()
    else:
        (folder / "manifest.json").write_text("{")
    put_embeddings(model_version, {tracks[5]: unit(5)}, rebuild=False)
    assert services.index_add(track_ids=[tracks[5].pk], model_version=model_version) == 6  # a rebuild
    store = IndexStore(folder)
    assert store.check().segments == () and store.current_version() > 2
    index, _ = store.load()
    assert sorted(index.ids().tolist()) == sorted(t.pk for t in tracks)


@pytest.mark.django_db
def test_the_feed_survives_an_unreadable_index_and_asks_for_a_repair(
    user_client, model_version, track_factory, put_embeddings, monkeypatch
):
    from recommend import tasks

    tracks = [track_factory() for _ in range(5)]
    put_embeddings(model_version, {t: unit(i) for i, t in enumerate(tracks)})
    services.index_mark_complete(model_version=model_version)
    index_readers._readers.clear()  # a web process that starts after the damage
    folder = index_readers.index_dir(model_version.pk)
    base = folder / IndexStore(folder).manifest().file
    base.write_bytes(base.read_bytes()[:100])
    asked = []
    monkeypatch.setattr(tasks.index_sync_task, "delay", lambda pk: asked.append(pk))
    assert index_readers.serving_index() == (model_version, None)
    assert user_client.get("/api/v1/feed/").status_code == 200
    assert asked == [model_version.pk]  # once, however many requests failed meanwhile
    tasks.index_sync_task(asked[0])  # the worker runs it
    assert len(index_readers.serving_index()[1]) == 5
