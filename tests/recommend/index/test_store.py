"""IndexStore: versioned atomic saves, one writer, deletions survive a round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommend.index import (
    IndexConfig,
    IndexNotFoundError,
    IndexStore,
    StaleIndexError,
    VectorIndex,
    WriterLockTimeout,
)
from recommend.index import store as store_module

from .conftest import KINDS, config_for, exact_top

REPO_ROOT = Path(__file__).resolve().parents[3]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_give_the_same_results(kind, tmp_path, data, queries):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for(kind))
    index.remove(ids[:100])
    store = IndexStore(tmp_path)
    assert store.save(index) == 1

    loaded, version = store.load()
    assert version == 1 and loaded.kind == kind and len(loaded) == len(ids) - 100
    assert loaded.n_tombstones == index.n_tombstones
    before, after = index.search(queries, 10), loaded.search(queries, 10)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_allclose(after.scores, before.scores, atol=1e-6)
    # The deleted tracks stay deleted after the round trip, even queried with their own vectors.
    assert not np.isin(loaded.search(vectors[:100], 10).ids, ids[:100]).any()
    np.testing.assert_array_equal(after.ids, exact_top(vectors[100:], ids[100:], queries, 10))


def test_versions_increase_and_old_files_are_cleaned_up(tmp_path, data):
    ids, vectors = data
    store = IndexStore(tmp_path)
    with pytest.raises(IndexNotFoundError):
        store.load()
    assert store.current_version() == 0
    index = VectorIndex.build(ids[:100], vectors[:100], config_for("flat"))
    for expected in (1, 2, 3, 4):
        index.add(ids[100 + expected : 101 + expected], vectors[100 + expected : 101 + expected])
        assert store.save(index) == expected
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["version"] == 4 and manifest["base"]["kind"] == "flat" and manifest["base"]["n_live"] == 104
    assert IndexConfig.from_dict(manifest["config"]) == index.config
    # The current file and the previous one (a reader may be about to open it); nothing older.
    assert sorted(p.name for p in tmp_path.glob("base-*.faiss")) == ["base-000003.faiss", "base-000004.faiss"]


def test_loaded_config_can_override_search_settings(tmp_path, data):
    ids, vectors = data
    IndexStore(tmp_path).save(VectorIndex.build(ids, vectors, config_for("ivf", ivf_nprobe=16)))
    loaded, _ = IndexStore(tmp_path).load(config=config_for("ivf", ivf_nprobe=2))
    assert loaded.faiss_index.nprobe == 2
    with pytest.raises(ValueError, match="dim"):
        IndexStore(tmp_path).load(config=IndexConfig(dim=8))


@pytest.mark.parametrize("failing_step", ["write_index", "replace"])
def test_failed_save_leaves_no_temp_file_and_keeps_the_old_version(tmp_path, data, queries, monkeypatch, failing_step):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids[:500], vectors[:500], config_for("flat")))
    index, _ = store.load()
    index.add(ids[500:], vectors[500:])

    if failing_step == "write_index":

        def half_write(faiss_index, path):
            Path(path).write_bytes(b"partial index")  # the disk filled up half way
            raise OSError("No space left on device")

        monkeypatch.setattr(store_module.faiss, "write_index", half_write)
    else:

        def no_replace(src, dst):
            raise OSError("rename failed")

        monkeypatch.setattr(store_module.os, "replace", no_replace)

    with pytest.raises(OSError):
        store.save(index)
    monkeypatch.undo()

    assert leftovers(tmp_path) == []
    assert store.current_version() == 1
    survivor, version = store.load()
    assert version == 1 and len(survivor) == 500
    # The failure did not spoil the writer either: the same index saves fine now, and a temp file
    # left by a writer killed mid-save (no chance to clean up) is swept by the next save.
    (tmp_path / ".base-000002.faiss.killed.tmp").write_bytes(b"orphan")
    assert store.save(index) == 2 and len(store.load()[0]) == len(ids)
    assert leftovers(tmp_path) == []


def test_saving_changes_made_to_an_old_version_is_refused(tmp_path, data):
    ids, vectors = data
    store = IndexStore(tmp_path)
    store.save(VectorIndex.build(ids[:500], vectors[:500], config_for("flat")))
    first, _ = store.load()
    second, _ = store.load()
    second.add(ids[500:600], vectors[500:600])
    assert store.save(second) == 2
    first.add(ids[600:700], vectors[600:700])  # built on version 1: would drop the ids 500..599
    with pytest.raises(StaleIndexError):
        store.save(first)
    # A full rebuild from the database is the source of truth and may replace anything.
    assert store.save(first, force=True) == 3
    assert store.save(VectorIndex.build(ids, vectors, config_for("flat"))) == 4


def test_only_one_writer_at_a_time(tmp_path, data):
    ids, vectors = data
    store = IndexStore(tmp_path)
    other_writer = (
        "import sys; from recommend.index import IndexStore, WriterLockTimeout\n"
        "try:\n"
        "    with IndexStore(sys.argv[1]).writer_lock(timeout=0.2):\n"
        "        print('acquired')\n"
        "except WriterLockTimeout:\n"
        "    print('refused')\n"
    )

    def run_other_writer() -> str:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
        done = subprocess.run(
            [sys.executable, "-c", other_writer, str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    with store.writer_lock():
        store.save(VectorIndex.build(ids, vectors, config_for("flat")))  # re-entrant inside the lock
        assert run_other_writer() == "refused"
    assert run_other_writer() == "acquired"
    with store.writer_lock(), pytest.raises(WriterLockTimeout), IndexStore(tmp_path).writer_lock(timeout=0.1):
        pass
