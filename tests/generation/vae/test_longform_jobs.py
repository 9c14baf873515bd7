"""LongformJobs: what each job kind does to a tune's chunk latents (no Django)."""

import numpy as np
import pytest
import torch

from generation.vae.config import MEL_TINY
from generation.vae.longform import LatentTune, LongformComposer
from generation.vae.longform_jobs import LongformJobs, TuneRequest, embedding
from generation.vae.model import MusicVAE
from generation.vae.prior import PRIOR_TINY, LatentPrior


@pytest.fixture
def jobs() -> LongformJobs:
    torch.manual_seed(3)
    prior = LatentPrior(PRIOR_TINY)
    prior.z_std.fill_(1.0)
    composer = LongformComposer(MusicVAE(MEL_TINY), prior, temperature=1.0)
    vectors = torch.randn(4, MEL_TINY.z_dim)
    return LongformJobs(
        composer, {"names": ["note_density", "register", "major_minor", "syncopation"], "vectors": vectors}
    )


@pytest.fixture
def tune() -> LatentTune:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, MEL_TINY.z_dim, generator=g)
    z[3] = z[1]  # a repeated phrase
    return LatentTune(z, torch.zeros(6, dtype=torch.bool), (4, 4))


def plan(jobs, **kwargs):
    return jobs._plan(TuneRequest(seed=7, **kwargs))


def test_sample_writes_the_asked_length_and_meter(jobs):
    tunes = plan(jobs, kind="sample", count=3, bars=10, meter=(3, 4))
    assert len(tunes) == 3 and all(t.n_chunks == 5 and t.meter == (3, 4) for t in tunes)


def test_continue_keeps_the_prompt_latents_exactly_and_writes_the_rest(jobs, tune):
    (out,) = plan(jobs, kind="continue", count=1, parents=(tune,), prompt_bars=4, bars=10)
    assert out.n_chunks == 5 and torch.equal(out.z[:2], tune.z[:2])
    assert not torch.equal(out.z[2], tune.z[2])


def test_infill_rewrites_only_the_chosen_bars(jobs, tune):
    (out,) = plan(jobs, kind="infill", count=1, parents=(tune,), from_bar=3, to_bar=6)  # chunks 1 and 2
    keep = [0, 3, 4, 5]
    assert torch.equal(out.z[keep], tune.z[keep])
    assert not torch.equal(out.z[1:3], tune.z[1:3])
    with pytest.raises(ValueError, match="past the tune's end"):
        plan(jobs, kind="infill", count=1, parents=(tune,), from_bar=21, to_bar=22)


def test_similar_moves_every_chunk_and_keeps_repeats_repeated(jobs, tune):
    outs = plan(jobs, kind="similar", count=2, parents=(tune,), spread=0.5)
    for out in outs:
        assert out.n_chunks == tune.n_chunks and not torch.allclose(out.z, tune.z)
        assert torch.equal(out.z[1], out.z[3])  # the repeated phrase is still a repeat
    assert not torch.equal(outs[0].z, outs[1].z)


def test_steer_moves_along_the_attribute_vector_in_a_ladder(jobs, tune):
    outs = plan(jobs, kind="steer", count=2, parents=(tune,), attribute="register", amount=2.0)
    vector = jobs.attribute_vectors[1]
    for out, amount in zip(outs, (1.0, 2.0)):
        torch.testing.assert_close(out.z - tune.z, amount * vector.expand_as(tune.z))
    with pytest.raises(ValueError):
        plan(jobs, kind="steer", count=1, parents=(tune,), attribute="loudness", amount=1.0)


def test_interpolate_goes_chunk_by_chunk_between_the_parents(jobs, tune):
    other = LatentTune(-tune.z[:4].clone(), torch.zeros(4, dtype=torch.bool), (3, 4))
    outs = plan(jobs, kind="interpolate", count=3, parents=(tune, other))
    assert [o.n_chunks for o in outs] == [4, 4, 4]
    assert outs[0].meter == (4, 4) and outs[-1].meter == (3, 4)  # the nearer parent's meter
    gaps = [float((o.z - tune.z[:4]).norm()) for o in outs]
    assert gaps == sorted(gaps)  # further from the first parent step by step


def test_compose_decodes_everything_and_refuses_only_the_bad_request(jobs, tune):
    good = TuneRequest(kind="sample", count=2, seed=1, bars=4)
    bad = TuneRequest(kind="infill", count=1, seed=1, parents=(tune,), from_bar=30, to_bar=31)
    out = jobs.compose([good, bad])
    assert len(out[0]) == 2 and isinstance(out[1], ValueError)
    assert out[0][0].tokens.shape == (2 * 32,) and out[0][0].latent.shape == (MEL_TINY.z_dim,)


def test_a_tunes_embedding_is_the_mean_of_its_chunks(tune):
    np.testing.assert_allclose(embedding(tune), tune.z.numpy().mean(axis=0), rtol=1e-6)


def test_lengths_are_counted_in_the_meters_own_chunks(jobs, tune):
    """A chunk holds 2 bars of 4/4, 3/4 or 6/8 but 4 bars of 2/4 (chunks.py): 16 bars are 8 or 4 chunks."""
    assert [t.n_chunks for t in plan(jobs, kind="sample", count=1, bars=16, meter=(3, 4))] == [8]
    assert [t.n_chunks for t in plan(jobs, kind="sample", count=1, bars=16, meter=(2, 4))] == [4]
    two_four = LatentTune(tune.z, tune.ties, (2, 4))
    (out,) = plan(jobs, kind="infill", count=1, parents=(two_four,), from_bar=5, to_bar=8)  # chunk 1 only
    assert torch.equal(out.z[[0, 2, 3, 4, 5]], tune.z[[0, 2, 3, 4, 5]]) and not torch.equal(out.z[1], tune.z[1])
