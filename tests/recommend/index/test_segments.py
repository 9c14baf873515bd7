"""Append-only segments: an add writes one small file, readers apply only what is new, compaction
changes no answer and survives a writer killed half way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from recommend.index import IndexCorruptError, IndexNotFoundError, IndexReader, IndexStore, VectorIndex

from .conftest import KINDS, clustered, config_for

REPO_ROOT = Path(__file__).resolve().parents[3]


def snapshot(directory: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (inode, mtime_ns, size) of every file but the lock."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
        for p in directory.iterdir()
        if p.name != "writer.lock"
    }


def same_answers(got, want, queries: np.ndarray, k: int = 10) -> None:
    assert sorted(got.ids().tolist()) == sorted(want.ids().tolist()) and len(got) == len(want)
    a, b = got.search(queries, k), want.search(queries, k)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def final_state(ids, vectors, steps) -> tuple[np.ndarray, np.ndarray]:
    """What the database would hold after the steps: ("add", ids, vectors) or ("remove", ids)."""
    state = dict(zip(ids.tolist(), vectors))
    for step in steps:
        if step[0] == "add":
            state.update(zip(step[1].tolist(), step[2]))
        else:
            for track_id in step[1].tolist():
                state.pop(track_id, None)
    keys = np.array(sorted(state), dtype=np.int64)
    return keys, np.stack([state[k] for k in keys.tolist()])


@pytest.fixture
def steps(data):
    """New tracks one by one and as a batch, a re-embedded base track, removals of base and new tracks."""
    ids, vectors = data
    new = clustered(40, seed=5)
    new_ids = np.arange(40, dtype=np.int64) + 100_000
    return [
        ("add", new_ids[:1], new[:1]),
        ("add", new_ids[1:30], new[1:30]),
        ("add", ids[:2], clustered(2, seed=9)),  # re-embedded: the base vector must stop answering
        ("remove", np.concatenate([ids[10:15], new_ids[5:7]])),
        ("add", new_ids[5:6], new[5:6]),  # removed, then back
        ("add", new_ids[30:], new[30:]),
    ]


def apply(store: IndexStore, step) -> int:
    if step[0] == "add":
        return store.append(step[1], step[2])
    return store.append([], np.empty((0, store.manifest().dim)), remove=step[1])


def test_append_writes_a_segment_and_rewrites_nothing_else(tmp_path, data):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids, vectors, config_for("ivf")))
    before = snapshot(tmp_path)
    assert store.append(ids[:0] + 999_999, clustered(1, seed=3)) == 2
    after = snapshot(tmp_path)
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed == {"manifest.json", "seg-000002.npz"}
    assert after["seg-000002.npz"][2] < 2_000  # one vector, not the index
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["base"]["file"] == "base-000001.faiss" and [s["version"] for s in manifest["segments"]] == [2]


@pytest.mark.parametrize("kind", KINDS)
def test_reader_applies_only_new_segments_and_ends_equal_to_a_rebuild(
    kind, tmp_path, data, queries, steps, monkeypatch
):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids, vectors, config_for(kind)))
    reader = IndexReader(tmp_path)
    assert len(reader.index) == len(ids)

    reads: list[str] = []
    real_base, real_segments = IndexStore._read_base, IndexStore._read_segments
    monkeypatch.setattr(IndexStore, "_read_base", lambda self, m, c: reads.append("base") or real_base(self, m, c))

    def spy_segments(self, manifest, *, after):
        segments = real_segments(self, manifest, after=after)
        reads.extend(f"seg{s.version}" for s in segments)
        return segments

    monkeypatch.setattr(IndexStore, "_read_segments", spy_segments)
    for number, step in enumerate(steps, start=2):
        assert apply(store, step) == number
        assert reader.reload_if_changed() is True and reader.version == number
    assert reads == [f"seg{v}" for v in range(2, len(steps) + 2)]  # each segment once, never the base

    want_ids, want_vectors = final_state(ids, vectors, steps)
    rebuilt = VectorIndex.build(want_ids, want_vectors, config_for(kind))
    assert rebuilt.kind == kind
    # An HNSW graph built another way may miss a neighbour that the layered search (exact over the
    # segments) finds: compare every kind with the exact answer; at this size they all are exact.
    rebuilt = VectorIndex.build(want_ids, want_vectors, config_for("flat"))
    same_answers(reader.index, rebuilt, queries)
    same_answers(store.load()[0], rebuilt, queries)  # the writer's merged view agrees
    # A fresh reader (a new web worker) reads base + every segment and agrees too.
    same_answers(IndexReader(tmp_path).index, rebuilt, queries)


def test_removed_and_replaced_tracks_stop_answering(tmp_path, data):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids, vectors, config_for("flat")))
    reader = IndexReader(tmp_path)
    store.append([], np.empty((0, vectors.shape[1])), remove=ids[:5])
    store.append(ids[5:6], -vectors[5:6])  # re-embedded pointing the other way
    index = reader.index
    assert len(index) == len(ids) - 5
    found = index.search(vectors[:6], 3).ids
    assert not np.isin(found[:5], ids[:5]).any() and found[5, 0] != ids[5]
    assert index.search(-vectors[5:6], 1).ids[0, 0] == ids[5]
    assert not np.isin(index.ids(), ids[:5]).any() and np.count_nonzero(index.ids() == ids[5]) == 1
    exported_ids, exported = index.export()
    np.testing.assert_allclose(exported[exported_ids == ids[5]][0] @ vectors[5], -np.linalg.norm(vectors[5]), rtol=1e-5)
    assert index.search(vectors[6:7], 5, exclude_ids=[ids[5], ids[6]]).ids[0].tolist().count(ids[6]) == 0


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_compaction_changes_no_answer_and_readers_switch_once(kind, tmp_path, data, queries, steps):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids, vectors, config_for(kind)))
    reader = IndexReader(tmp_path)
    for step in steps:
        apply(store, step)
    before = reader.index
    version = store.compact()
    manifest = store.manifest()
    assert version == len(steps) + 2 and manifest.segments == () and manifest.file == f"base-{version:06d}.faiss"
    assert reader.reload_if_changed() is True and reader.index.base_version == version and reader.index.n_overlay == 0
    same_answers(reader.index, before, queries)
    # Only the new base, and the previous state (a reader may be half way through reading it).
    assert sorted(p.name for p in tmp_path.glob("base-*")) == ["base-000001.faiss", f"base-{version:06d}.faiss"]
    apply(store, steps[0])  # appending goes on over the new base
    store.compact()
    assert sorted(p.name for p in tmp_path.glob("seg-*")) == [f"seg-{version + 1:06d}.npz"]


def test_compaction_thresholds(tmp_path, data):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids, vectors, config_for("flat", compact_max_segments=3, compact_min_rows=100)))
    assert not store.should_compact()
    store.append(ids[:4], vectors[:4])
    assert not store.should_compact()  # 4 rows of at most 5% of 1200
    store.append(ids[:60], vectors[:60])
    assert store.should_compact()  # 64 rows > 60
    store.compact()
    for _ in range(2):
        store.append(ids[:1], vectors[:1])
    assert not store.should_compact()
    store.append(ids[:1], vectors[:1])
    assert store.should_compact()  # 3 segments


KILLED_WRITER = """
import os, sys
from recommend.index import IndexStore
from recommend.index import store as store_module

real = store_module.IndexStore._write_manifest
def die(self, manifest):
    os._exit(9)  # killed after the new {what} file is written, before the manifest names it
store_module.IndexStore._write_manifest = die
store = IndexStore(sys.argv[1])
if "{what}" == "base":
    store.compact()
else:
    import numpy as np
    store.append([777_777], np.ones((1, store.manifest().dim)))
"""


@pytest.mark.parametrize("what", ["base", "segment"])
def test_a_writer_killed_before_the_manifest_leaves_the_old_state_in_charge(what, tmp_path, data, queries, steps):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids, vectors, config_for("flat")))
    for step in steps:
        apply(store, step)
    old_manifest = (tmp_path / "manifest.json").read_text()
    old_index, old_version = store.load()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER.replace("{what}", what), str(tmp_path)], env=env, timeout=120
    )
    assert done.returncode == 9
    orphan = f"base-{old_version + 1:06d}.faiss" if what == "base" else f"seg-{old_version + 1:06d}.npz"
    assert (tmp_path / orphan).exists()  # the file was written...
    assert (tmp_path / "manifest.json").read_text() == old_manifest  # ...but never put in charge
    same_answers(IndexReader(tmp_path).index, old_index, queries)
    # The next writer carries on: its version reuses the orphan's number (an orphan segment is simply
    # overwritten), and the next compaction sweeps an orphan base.
    assert store.append(ids[:1], vectors[:1]) == old_version + 1
    assert store.manifest().segments[-1].n_add == 1
    store.compact()
    assert not (tmp_path / f"base-{old_version + 1:06d}.faiss").exists()


def test_unreadable_files_raise_a_not_found_kind_of_error_and_a_forced_save_recovers(tmp_path, data, queries):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids, vectors, config_for("flat")))
    store.append(ids[:1], vectors[1:2])
    base = tmp_path / "base-000001.faiss"
    base.write_bytes(base.read_bytes()[:1000])  # a truncated base
    with pytest.raises(IndexCorruptError):
        store.check()
    with pytest.raises(IndexNotFoundError):  # what the callers already handle
        _ = IndexReader(tmp_path).index
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptError):
        store.manifest()
    # A rebuild from the source of truth replaces it with a higher version than anything on disk.
    assert store.save(VectorIndex.build(ids, vectors, config_for("flat")), force=True) == 3
    assert store.check().version == 3 and len(IndexReader(tmp_path).index) == len(ids)


def test_a_reader_catches_up_while_a_writer_process_appends_and_compacts(tmp_path, data, queries):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids[:600], vectors[:600], config_for("flat", compact_max_segments=7)))
    np.save(tmp_path.parent / "vectors.npy", vectors)
    writer = (
        "import sys, numpy as np\n"
        "from recommend.index import IndexStore\n"
        "store, vectors = IndexStore(sys.argv[1]), np.load(sys.argv[2])\n"
        "for start in range(600, 1200, 20):\n"
        "    ids = np.arange(start, start + 20) * 7 + 3\n"
        "    store.append(ids, vectors[start:start + 20], remove=[(start - 600) * 7 + 3])\n"
        "    if store.should_compact():\n"
        "        store.compact()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(tmp_path), str(tmp_path.parent / "vectors.npy")], env=env
    )
    reader = IndexReader(tmp_path)
    errors: list[BaseException] = []
    seen: list[list[int]] = []

    def search_loop() -> None:
        versions: list[int] = []
        seen.append(versions)
        try:
            while process.poll() is None:
                index = reader.index
                result = index.search(queries, 10)
                assert (result.ids >= 0).all() and len(index) >= 600
                versions.append(index.version)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=search_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    assert process.wait(timeout=240) == 0
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors[0]
    assert all(v == sorted(v) for v in seen) and max(max(v) for v in seen) > 2  # it caught up as it went
    removed = np.arange(0, 600, 20) * 7 + 3
    keep = ~np.isin(ids, removed)
    same_answers(reader.index, VectorIndex.build(ids[keep], vectors[keep], config_for("flat")), queries)


def test_two_folders_fed_the_same_changes_answer_the_same(tmp_path, data, queries, steps):
    """Two hosts, each its own folder and its own compaction points, fed the same changes."""
    ids, vectors = data
    a = IndexStore(tmp_path / "a")
    b = IndexStore(tmp_path / "b")
    a.save(VectorIndex.build(ids, vectors, config_for("ivf")))
    b.save(VectorIndex.build(ids, vectors, config_for("ivf")))
    reader_a, reader_b = IndexReader(a.directory), IndexReader(b.directory)
    for number, step in enumerate(steps):
        apply(a, step)
        apply(b, step)
        if number % 2:
            b.compact()
        same_answers(reader_a.index, reader_b.index, queries)
