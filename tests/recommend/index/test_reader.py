"""IndexReader: a reader process picks up a new version saved by a writer process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from recommend.index import IndexNotFoundError, IndexReader, IndexStore, VectorIndex

from .conftest import config_for

REPO_ROOT = Path(__file__).resolve().parents[3]

# Process B: load, report, wait for the writer, reload if changed, report again.
READER_SCRIPT = """
import sys
import numpy as np
from recommend.index import IndexReader

reader = IndexReader(sys.argv[1])
query = np.array(eval(sys.argv[2]), dtype=np.float32)
def report():
    result = reader.search(query, 1)
    print(reader.version, int(result.ids[0, 0]), flush=True)
report()
sys.stdin.readline()  # the writer saves a new version meanwhile
print(reader.reload_if_changed(), flush=True)
report()
print(reader.reload_if_changed(), flush=True)  # nothing new this time
"""


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_another_process_sees_the_new_version(tmp_path, data, kind):
    ids, vectors = data
    store = IndexStore(tmp_path)
    index = VectorIndex.build(ids, vectors, config_for(kind))
    store.save(index)
    query = vectors[0]

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER_SCRIPT, str(tmp_path), repr(query.tolist())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert reader.stdout.readline().split() == ["1", str(ids[0])]
        # Process A (this one) deletes the track the reader just found and saves version 2.
        with store.writer_lock():
            index.remove(ids[:1])
            store.save(index)
        out, err = reader.communicate("go\n", timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    reloaded, found, unchanged = out.splitlines()[:3]
    version, top = found.split()
    assert reloaded == "True" and unchanged == "False"
    assert version == "2" and int(top) != ids[0]


def test_reader_loads_lazily_and_limits_threads(tmp_path, data):
    ids, vectors = data
    reader = IndexReader(tmp_path, search_threads=1)
    assert reader.version == 0  # nothing read yet: safe to create before a server forks
    with pytest.raises(IndexNotFoundError):
        reader.search(vectors[:1], 1)
    IndexStore(tmp_path).save(VectorIndex.build(ids, vectors, config_for("flat")))
    assert reader.search(vectors[:1], 1).ids[0, 0] == ids[0]
    assert reader.version == 1
    assert faiss.omp_get_max_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"


def test_reader_reloads_in_a_forked_child(tmp_path, data):
    ids, vectors = data
    IndexStore(tmp_path).save(VectorIndex.build(ids, vectors, config_for("flat")))
    reader = IndexReader(tmp_path)
    first = reader.index
    reader._pid = -1  # what a fork looks like from inside the child
    assert reader.reload_if_changed() is True
    assert reader.index is not first and reader.version == 1


def test_search_settings_come_from_the_reader_config(tmp_path, data):
    ids, vectors = data
    IndexStore(tmp_path).save(VectorIndex.build(ids, vectors, config_for("hnsw", hnsw_ef_search=256)))
    reader = IndexReader(tmp_path, config=config_for("hnsw", hnsw_ef_search=40))
    assert faiss.downcast_index(reader.index.faiss_index.index).hnsw.efSearch == 40
    np.testing.assert_array_equal(reader.search(vectors[:3], 1).ids[:, 0], ids[:3])
