"""VectorIndex: add, search, delete and rebuild agree with brute force for every kind."""

from __future__ import annotations

import numpy as np
import pytest

from recommend.index import IndexConfig, VectorIndex

from .conftest import DIM, KINDS, clustered, config_for, exact_top


@pytest.mark.parametrize("kind", KINDS)
def test_search_matches_brute_force(kind, data, queries):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for(kind))
    assert index.kind == kind and len(index) == len(ids)
    result = index.search(queries, 10)
    assert result.ids.shape == result.scores.shape == (len(queries), 10)
    np.testing.assert_array_equal(result.ids, exact_top(vectors, ids, queries, 10))
    assert np.all(np.diff(result.scores, axis=1) <= 1e-6)  # best first
    assert np.all(result.scores <= 1.0 + 1e-5)  # cosine, not raw inner product


@pytest.mark.parametrize("kind", KINDS)
def test_a_track_is_its_own_nearest_neighbour(kind, data):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for(kind))
    result = index.search(vectors[:5] * 3.0, 1)  # scale must not matter: cosine
    np.testing.assert_array_equal(result.ids[:, 0], ids[:5])
    np.testing.assert_allclose(result.scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_incremental_build_equals_rebuild(kind, data, queries):
    ids, vectors = data
    config = config_for(kind)
    incremental = VectorIndex.build(ids[:800], vectors[:800], config)
    incremental.add(ids[800:1000], vectors[800:1000])
    incremental.add(ids[1000:], vectors[1000:])
    incremental.remove(ids[::5])
    survivors = np.ones(len(ids), bool)
    survivors[::5] = False
    rebuilt_from_arrays = VectorIndex.build(ids[survivors], vectors[survivors], config)
    compacted = incremental.rebuilt()

    expected = exact_top(vectors[survivors], ids[survivors], queries, 10)
    for index in (incremental, rebuilt_from_arrays, compacted):
        np.testing.assert_array_equal(index.search(queries, 10).ids, expected)
    assert compacted.n_tombstones == 0 and len(compacted) == survivors.sum()
    exported_ids, exported_vectors = incremental.export()
    assert sorted(exported_ids) == sorted(ids[survivors])
    np.testing.assert_allclose(np.linalg.norm(exported_vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_ids_never_come_back(kind, data, queries):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for(kind))
    deleted = ids[:300]
    assert index.remove(deleted) == 300
    assert index.remove(deleted) == 0  # deleting again is harmless
    assert len(index) == len(ids) - 300
    if kind == "hnsw":
        assert index.n_tombstones == 300  # HNSW keeps the nodes, marked dead
    # Query with the deleted tracks' own vectors: they would be the top hit if they were still there.
    for result in (index.search(vectors[:300], 10), index.search(queries, len(ids))):
        assert not np.isin(result.ids, deleted).any()
        assert (result.ids >= 0).all()
    assert not np.isin(index.ids(), deleted).any()


@pytest.mark.parametrize("kind", KINDS)
def test_rows_stay_full_despite_tombstones_and_exclusions(kind, data, queries):
    ids, vectors = data
    # A small efSearch / nprobe, so only over-fetching and the exact fallback can fill the rows.
    index = VectorIndex.build(ids, vectors, config_for(kind, hnsw_ef_search=16, ivf_nprobe=1))
    top = exact_top(vectors, ids, queries, 50)
    index.remove(top[:, :30].ravel())  # the 30 best of every query are gone
    excluded = top[:, 30:40].ravel()  # and the next 10 are excluded
    result = index.search(queries, 10, exclude_ids=excluded)
    assert result.ids.shape == (len(queries), 10)
    assert (result.ids >= 0).all()
    assert not np.isin(result.ids, top[:, :40]).any()
    assert all(len(set(row)) == 10 for row in result.ids.tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_exclude_ids(kind, data, queries):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for(kind))
    plain = index.search(queries, 10)
    excluded = set(plain.ids[:, :3].ravel().tolist())  # any iterable of ints is accepted
    result = index.search(queries, 10, exclude_ids=excluded)
    assert not np.isin(result.ids, list(excluded)).any()
    survivors = np.setdiff1d(ids, list(excluded))
    np.testing.assert_array_equal(result.ids, exact_top(vectors[np.isin(ids, survivors)], survivors, queries, 10))


@pytest.mark.parametrize("kind", KINDS)
def test_add_replaces_an_existing_track(kind, data):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for(kind))
    far = -vectors[0]  # point the track the other way
    index.add(ids[:1], far[None, :])
    assert len(index) == len(ids)
    assert index.search(far, 1).ids[0, 0] == ids[0]
    assert ids[0] not in index.search(vectors[0], 5).ids  # the old vector left no trace


@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_the_index(kind, data):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for(kind))
    index.remove(ids[10:])
    result = index.search(vectors[:2], 50)
    assert result.ids.shape == (2, 10)
    assert sorted(result.ids[0]) == sorted(ids[:10])
    result = index.search(vectors[:2], 50, exclude_ids=ids[:4])
    assert result.ids.shape == (2, 6)


def test_empty_index_returns_empty_rows():
    index = VectorIndex.empty(IndexConfig(dim=DIM))
    result = index.search(np.ones((3, DIM)), 5)
    assert result.ids.shape == (3, 0) and result.scores.shape == (3, 0)
    assert len(index) == 0 and index.ids().size == 0


def test_auto_kind_follows_catalog_size(data):
    ids, vectors = data
    small = VectorIndex.build(ids, vectors, IndexConfig(dim=DIM, flat_max_size=5_000))
    assert small.kind == "flat"
    big = VectorIndex.build(ids, vectors, IndexConfig(dim=DIM, flat_max_size=500, ivf_nlist=16))
    assert big.kind == "ivf"
    # 4 * sqrt(1200) = 139 lists cannot be trained on 1200 points: auto stays exact.
    assert IndexConfig(dim=DIM, flat_max_size=500).resolve_kind(1200) == "flat"
    assert IndexConfig(dim=DIM, flat_max_size=500, large_kind="hnsw").resolve_kind(1200) == "hnsw"
    grown = VectorIndex.build(ids[:400], vectors[:400], IndexConfig(dim=DIM, flat_max_size=500, ivf_nlist=16))
    grown.add(ids[400:], vectors[400:])
    assert grown.kind == "flat" and "ivf" in (grown.needs_rebuild() or "")
    assert grown.rebuilt().kind == "ivf"


def test_hnsw_asks_for_a_rebuild_when_tombstones_pile_up(data):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for("hnsw"))
    index.remove(ids[:100])
    assert index.needs_rebuild() is None
    index.remove(ids[:400])
    assert "deleted" in (index.needs_rebuild() or "")


@pytest.mark.parametrize(
    ("queries", "k", "message"),
    [
        (np.ones((2, DIM + 1)), 5, "dimension"),
        (np.ones(DIM - 1), 5, "dimension"),
        (np.ones((2, DIM, 1)), 5, "shape"),
        (np.full((2, DIM), np.nan), 5, "NaN"),
        (np.where(np.eye(2, DIM) > 0, np.inf, 1.0), 5, "NaN or infinite"),
        (np.zeros((1, DIM)), 5, "zero vector"),
        (np.array([["a"] * DIM]), 5, "numeric"),
        (np.ones((1, DIM)), 0, "k must be"),
        (np.ones((1, DIM)), 2.5, "k must be"),
    ],
)
def test_bad_queries_are_rejected_clearly(data, queries, k, message):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for("flat"))
    with pytest.raises(ValueError, match=message):
        index.search(queries, k)


@pytest.mark.parametrize(
    ("new_ids", "new_vectors", "message"),
    [
        ([1, 2], np.ones((3, DIM)), "2 ids for 3 vectors"),
        ([1, 1], np.ones((2, DIM)), "duplicates"),
        ([-1], np.ones((1, DIM)), "non-negative"),
        ([1.5], np.ones((1, DIM)), "integers"),
        ([1], np.ones((1, DIM + 2)), "dimension"),
        ([1], np.array([[np.nan] * DIM]), "NaN"),
    ],
)
def test_bad_additions_are_rejected_and_change_nothing(data, new_ids, new_vectors, message):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for("hnsw"))
    with pytest.raises(ValueError, match=message):
        index.add(new_ids, new_vectors)
    assert len(index) == len(ids) and index.n_tombstones == 0


def test_bad_exclude_ids_are_rejected(data):
    ids, vectors = data
    index = VectorIndex.build(ids, vectors, config_for("flat"))
    with pytest.raises(ValueError, match="sequence"):
        index.search(vectors[:1], 5, exclude_ids=7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        index.search(vectors[:1], 5, exclude_ids=[-3])


def test_ivf_refuses_to_train_on_too_few_vectors():
    with pytest.raises(ValueError, match="needs at least"):
        VectorIndex.build(np.arange(100), clustered(100), config_for("ivf"))


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="kind"):
        IndexConfig(dim=DIM, kind="lsh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim"):
        IndexConfig(dim=0)
    with pytest.raises(ValueError, match="ivf_nprobe"):
        IndexConfig(dim=DIM, ivf_nprobe=0)
