"""What the codebook prior's head scores beyond the state (a chunk's fit to the tune's scale and range,
its distance to the chunks just before, how many of its figures the tune has played) and the forms
new tunes take from the training tunes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from generation.vae.config import MEL_TINY
from generation.vae.longform import LongformComposer
from generation.vae.model import MusicVAE
from generation.vae.prior import (
    EDGE_BINS,
    FIGURE_BINS,
    SPAN_BINS,
    LatentPrior,
    chunk_context,
    chunk_figures,
    chunk_pitch_classes,
    chunk_rhythm,
    closing_chunks,
    copy_targets,
    edge_bins,
    figure_bins,
    outside_scale,
    scale_bins,
    span_bins,
)
from generation.vae.representation import FIRST_NOTE, MIN_PITCH, OFF

from .test_longform import PRIOR_CODES, one_note_prior, synthetic_cache


def mask(*pcs: int) -> int:
    return sum(1 << pc for pc in {p % 12 for p in pcs})


C_MAJOR = mask(0, 2, 4, 5, 7, 9, 11)


def test_scale_bins_count_the_pitch_classes_a_chunk_adds_outside_the_tunes_scale():
    table = outside_scale()
    assert table[C_MAJOR] == 0 and table[mask(7, 9, 11, 0, 2, 4, 6)] == 0  # G major
    assert table[C_MAJOR | mask(6)] == 1 and table[4095] == 5
    chunks = torch.tensor([mask(0, 4, 7), mask(6), mask(6, 1), mask(6, 1, 8), 0])
    assert scale_bins(torch.tensor([C_MAJOR]), chunks, table).tolist() == [[0, 1, 2, 2, 0]]
    g_major = mask(7, 9, 11, 0, 2, 4, 6)  # F# is in G major's scale, F is not
    assert scale_bins(torch.tensor([g_major]), torch.tensor([mask(6), mask(5)]), table).tolist() == [[0, 1]]


def test_span_bins_measure_how_far_a_chunk_widens_the_tunes_range():
    tunes = torch.tensor([[60, 72], [128, -1]])  # a tune from C4 to C5, and one with no note yet
    chunks = torch.tensor([[62, 70], [60, 74], [55, 72], [48, 86], [128, -1]])
    bins = span_bins(tunes, chunks)
    assert bins[0].tolist() == [0, 1, 3, 5, 0]  # 0, 2, 5 and 12 + 14 semitones; a rest widens nothing
    assert bins[1].tolist() == [SPAN_BINS - 1] * 5


def test_chunk_context_reads_pitch_classes_and_range_from_the_steps():
    w = torch.zeros(2, 32, dtype=torch.long)
    w[0, [0, 4, 8]] = torch.tensor([60, 64, 67]) - MIN_PITCH + FIRST_NOTE
    w[1, :] = OFF
    assert chunk_context(w).tolist() == [[mask(0, 4, 7), 60, 67], [0, 128, -1]]


def chromatic_prior() -> LatentPrior:
    """Twelve codes, code k one note of pitch 60 + k: every pitch class once."""
    return one_note_prior(1)


def draw(prior: LatentPrior, tunes: int = 16, chunks: int = 6, seed: int = 1) -> torch.Tensor:
    """The codes of `tunes` new tunes (no copies)."""
    z, _, _ = prior.fill(
        torch.zeros(tunes, chunks, PRIOR_CODES.z_dim),
        torch.zeros(tunes, chunks, dtype=torch.bool),
        torch.zeros(tunes, chunks, dtype=torch.bool),
        torch.ones(tunes, dtype=torch.long),
        torch.ones(tunes, dtype=torch.bool),
        1.0,
        torch.Generator().manual_seed(seed),
        copy_bias=-50.0,
    )
    return prior.nearest_code(z)


def after_prompt(prior: LatentPrior, first: torch.Tensor, tunes: int = 16) -> torch.Tensor:
    """The codes of 3 new chunks after a given first chunk of steps `first` [32] (no copies)."""
    given = torch.zeros(tunes, 4, 32, dtype=torch.long)
    given[:, 0] = first
    known = torch.zeros(tunes, 4, dtype=torch.bool)
    known[:, 0] = True
    z, _, _ = prior.fill(
        torch.randn(tunes, 4, PRIOR_CODES.z_dim),
        torch.zeros(tunes, 4, dtype=torch.bool),
        known,
        torch.ones(tunes, dtype=torch.long),
        torch.ones(tunes, dtype=torch.bool),
        1.0,
        torch.Generator().manual_seed(2),
        copy_bias=-50.0,
        windows=given,
    )
    return prior.nearest_code(z[:, 1:])


def test_the_scale_term_keeps_a_tune_in_one_diatonic_scale():
    prior = chromatic_prior()
    table = outside_scale()

    def outside(codes: torch.Tensor) -> list[int]:
        return [int(table[mask(*(60 + c for c in row.tolist()))]) for row in codes]

    assert max(outside(draw(prior))) > 0  # the control: without the term, tunes wander off their scale
    with torch.no_grad():
        prior.context.bias[1:3] = -60.0  # adding one or more pitch classes outside the scale
    assert outside(draw(prior)) == [0] * 16
    # a known chunk's pitch classes count from its given steps: F#4 and C#5, a chunk no code is
    first = torch.zeros(32, dtype=torch.long)
    first[[0, 8]] = torch.tensor([66, 73]) - MIN_PITCH + FIRST_NOTE
    drawn = after_prompt(prior, first)
    assert all(table[mask(6, 1, *(60 + c for c in row.tolist()))] == 0 for row in drawn)


def test_the_span_term_keeps_each_chunk_near_the_tunes_range():
    prior = chromatic_prior()

    def widest(codes: torch.Tensor) -> int:
        most = 0
        for row in codes.tolist():
            lo = hi = row[0]
            for c in row[1:]:
                most = max(most, c - hi, lo - c)
                lo, hi = min(lo, c), max(hi, c)
        return most

    assert widest(draw(prior)) >= 5
    with torch.no_grad():
        prior.context.bias[3 + 3 : 3 + 6] = -60.0  # widening the range by 5 semitones or more
    assert widest(draw(prior)) < 5


def test_the_similarity_term_pulls_a_new_chunk_towards_the_one_before():
    prior = chromatic_prior()
    with torch.no_grad():
        prior.similar.bias[0] = 1e5  # the chunk 1 back, far stronger than anything else
    codes = draw(prior, tunes=4)
    coords = prior.code_coords
    for row in codes.tolist():
        for i in range(1, len(row)):
            # the nearest code to the chunk before, among those the tune has not used yet
            free = [k for k in range(12) if k not in row[:i]]
            dist = ((coords[free] - coords[row[i - 1]]) ** 2).sum(-1)
            assert row[i] == free[int(dist.argmin())]


def test_terms_left_at_zero_change_neither_draws_nor_likelihood():
    torch.manual_seed(0)
    terms = ("context_terms", "figure_terms", "edge_terms", "rhythm_terms", "pitch_terms")
    plain_cfg = dataclasses.replace(PRIOR_CODES, similar_lags=0, **dict.fromkeys(terms, False))
    full, plain = LatentPrior(PRIOR_CODES), LatentPrior(plain_cfg)
    full.z_std.fill_(1.0)
    with torch.no_grad():
        full.code_coords.copy_(torch.randn(12, PRIOR_CODES.pca_dim))
        # a few notes each, at random steps: codes differ in their scale, range and rhythm
        full.code_windows.zero_()
        for k in range(12):
            steps = torch.randperm(32)[: 2 + k % 4]
            full.code_windows[k, steps] = (FIRST_NOTE + torch.randint(50, 75, (len(steps),)) - MIN_PITCH).to(torch.int8)
    plain.load_state_dict(full.state_dict(), strict=False)
    full.eval(), plain.eval()
    drawn = [draw(p, chunks=5) for p in (full, plain)]
    assert torch.equal(*drawn)
    z = full.code_latents()[drawn[0]]
    args = (torch.zeros(16, 5, dtype=torch.bool), torch.ones(16, 5, dtype=torch.bool), torch.ones(16).long())
    cond = (torch.full((16,), 5), torch.ones(16, dtype=torch.bool))
    with torch.no_grad():
        a, b = (p.log_likelihood(z, *args, *cond)["z"] for p in (full, plain))
        torch.testing.assert_close(a, b)
        full.context.bias.copy_(torch.linspace(-3, 3, len(full.context.bias)))  # every bin its own weight
        assert not torch.allclose(full.log_likelihood(z, *args, *cond)["z"], b)
        full.context.bias.zero_()
        full.figure.bias[0] = 3.0
        assert not torch.allclose(full.log_likelihood(z, *args, *cond)["z"], b)
        full.figure.bias[0] = 0.0
        full.edge.bias[EDGE_BINS:] = torch.linspace(-3, 3, EDGE_BINS)  # by the last note's pitch class
        assert not torch.allclose(full.log_likelihood(z, *args, *cond)["z"], b)
        full.edge.bias.zero_()
        full.rhythm.bias[:32] = torch.linspace(-3, 3, 32)
        assert not torch.allclose(full.log_likelihood(z, *args, *cond)["z"], b)
        full.rhythm.bias.zero_()
        full.pitch.bias.copy_(torch.linspace(-3, 3, 12))
        assert not torch.allclose(full.log_likelihood(z, *args, *cond)["z"], b)


def test_the_likelihood_of_a_new_chunk_leaves_out_the_earlier_chunks_codes():
    """As the sampler never draws them: the code head's softmax is over the codes no earlier chunk is."""
    prior = chromatic_prior()
    z = prior.code_latents()[torch.tensor([[3, 7, 3, 9]])]  # chunk 2 repeats chunk 0 (a copy)
    ties, meter = torch.zeros(1, 4, dtype=torch.bool), torch.ones(1).long()
    length, ends = torch.tensor([4]), torch.ones(1, dtype=torch.bool)
    with torch.no_grad():
        h = prior.hidden(prior.standardize(z), ties, meter, length, ends)
        codes = torch.tensor([[3, 7, 3, 9]])
        need = torch.tensor([[True, True, False, True]])
        got = prior.code_log_prob(h, codes, meter, need)
        for i, earlier in ((0, []), (1, [3]), (3, [3, 7])):
            logits = prior.code_logits(h[0, i : i + 1], 1)[0]
            logits[earlier] = float("-inf")
            assert float(got[0, i]) == pytest.approx(float(logits.log_softmax(-1)[codes[0, i]]), abs=1e-5)


def notes(*pitches: int, every: int = 4) -> torch.Tensor:
    """A 32-step window of these notes, one every `every` steps, then silence."""
    w = torch.zeros(32, dtype=torch.long)
    for k, p in enumerate(pitches):
        w[k * every] = p - MIN_PITCH + FIRST_NOTE
    w[len(pitches) * every] = OFF
    return w


def figure_id(*intervals: int) -> int:
    return sum((iv + 12) * 25 ** (2 - j) for j, iv in enumerate(intervals))


def test_chunk_figures_are_the_interval_patterns_of_four_consecutive_notes():
    windows = torch.stack([notes(60, 62, 64, 62, 79), notes(60, 62, 64), notes(72, 71, 69, 67, every=2)])
    ids = chunk_figures(windows)
    assert ids.shape == (3, 29)
    # 2, 2, -2, then 17 clipped to an octave; silences and holds between notes are not notes
    assert ids[0][ids[0] >= 0].tolist() == [figure_id(2, 2, -2), figure_id(2, -2, 12)]
    assert (ids[1] < 0).all()  # three notes: no figure
    assert ids[2][ids[2] >= 0].tolist() == [figure_id(-1, -2, -2)]


def test_figure_bins_bin_the_share_of_a_chunks_figures_the_tune_has_played():
    played = torch.tensor([[0.0, 1, 2, 3, 4, 3, 0], [0, 0, 0, 0, 0, 0, 0]])
    figures = torch.tensor([4, 4, 4, 4, 4, 5, 0])
    bins = figure_bins(played, figures, torch.tensor([True, False]))
    assert bins[0].tolist() == [0, 1, 2, 3, 5, 3, FIGURE_BINS - 1]  # 0, 1/4, 1/2, 3/4, all, 3/5, none
    assert bins[1].tolist() == [FIGURE_BINS - 1] * 7  # a tune that has played no figure yet


RISING, FALLING = (0, 2, 4, 5), (0, -1, -3, -5)  # two figures: (2, 2, 1) and (-1, -2, -2)


def figure_prior() -> LatentPrior:
    """Twelve codes of four notes: codes 0-5 the rising figure from 60..65, codes 6-11 the falling one."""
    prior = one_note_prior(1)
    with torch.no_grad():
        for k in range(12):
            shape = RISING if k < 6 else FALLING
            prior.code_windows[k] = notes(*(60 + k % 6 + step for step in shape))
    return prior


def test_the_figure_term_makes_a_tune_come_back_to_its_figures():
    prior = figure_prior()

    def families(codes: torch.Tensor) -> list[set[bool]]:
        return [{c < 6 for c in row.tolist()} for row in codes]

    assert any(len(f) == 2 for f in families(draw(prior)))  # the control: tunes mix the two figures
    with torch.no_grad():
        prior.figure.bias[0] = -60.0  # a chunk none of whose figures the tune has played
    assert all(len(f) == 1 for f in families(draw(prior)))
    # a known chunk's figures count from its given steps: the falling figure from 70, a chunk no code is
    assert (after_prompt(prior, notes(*(70 + step for step in FALLING))) >= 6).all()


def test_the_figure_terms_likelihood_counts_only_the_chunks_before():
    prior = figure_prior()
    with torch.no_grad():
        prior.figure.bias[0] = -30.0
    ties, valid, meter = torch.zeros(2, 2, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool), torch.ones(2).long()
    z = prior.code_latents()[torch.tensor([[0, 1], [0, 7]])]  # rising then rising; rising then falling
    with torch.no_grad():
        ll = prior.log_likelihood(z, ties, valid, meter, torch.full((2,), 2), torch.ones(2, dtype=torch.bool))["z"]
    assert float(ll[1]) < float(ll[0]) - 20  # the falling chunk shares no figure with the chunk before it


def test_edge_bins_are_pitch_classes_and_no_note():
    assert edge_bins(torch.tensor([60, 69, 71, 0, -1])).tolist() == [0, 9, 11, 0, EDGE_BINS - 1]


def test_the_edge_term_scores_a_chunks_first_and_last_note_apart():
    """Rising codes 0-5 run from 60 + k to 65 + k, falling codes 6-11 from 60 + k % 6 down to 55 + k % 6:
    a weight on a last pitch class picks the codes that end there, one on a first pitch class those
    that begin there."""
    prior = figure_prior()
    first_chunks = lambda: draw(prior, chunks=2)[:, 0].tolist()  # noqa: E731
    before = set(first_chunks())
    assert before != {0} and not before <= {2, 8}  # the control: without the weights, other codes
    with torch.no_grad():
        prior.edge.bias[EDGE_BINS + 5] = 60.0  # ends on F: only the rising code from C
    assert first_chunks() == [0] * 16
    with torch.no_grad():
        prior.edge.bias.zero_()
        prior.edge.bias[2] = 60.0  # begins on D: the rising and the falling code from D
    assert set(first_chunks()) <= {2, 8}


def test_chunk_rhythm_marks_the_steps_where_notes_and_rests_start():
    w = torch.zeros(1, 32, dtype=torch.long)
    w[0, [0, 3, 4]] = FIRST_NOTE + 39  # a dotted eighth, a sixteenth, a note held on
    w[0, 10] = OFF
    rhythm = chunk_rhythm(w)[0]
    assert rhythm.shape == (64,)
    assert torch.nonzero(rhythm[:32])[:, 0].tolist() == [0, 3, 4]
    assert torch.nonzero(rhythm[32:])[:, 0].tolist() == [10]


def test_the_rhythm_term_draws_chunks_by_where_their_notes_and_rests_start():
    """Code k one C starting at step k and a rest at step 12 + k: a weight on a step's note onset, or on
    a step's rest, draws the one code that has it."""
    prior = one_note_prior(1)
    with torch.no_grad():
        prior.code_windows.zero_()
        for k in range(12):
            prior.code_windows[k, k] = FIRST_NOTE + 60 - MIN_PITCH
            prior.code_windows[k, 12 + k] = OFF
    first_chunks = lambda: draw(prior, chunks=2)[:, 0].tolist()  # noqa: E731
    before = set(first_chunks())
    assert not before <= {5} and not before <= {7}  # the control: without the weights, other codes
    with torch.no_grad():
        prior.rhythm.bias[5] = 60.0  # a note starts at step 5
    assert first_chunks() == [5] * 16
    with torch.no_grad():
        prior.rhythm.bias.zero_()
        prior.rhythm.bias[32 + 12 + 7] = 60.0  # a rest starts at step 19
    assert first_chunks() == [7] * 16


def test_chunk_pitch_classes_share_the_sounding_steps_among_pitch_classes():
    w = torch.zeros(3, 32, dtype=torch.long)
    w[0, 0], w[0, 8], w[0, 12] = FIRST_NOTE + 60 - MIN_PITCH, FIRST_NOTE + 79 - MIN_PITCH, OFF  # C 8 steps, G 4
    w[1, 4] = FIRST_NOTE + 62 - MIN_PITCH  # steps 0-3 held over from before: not this chunk's
    w[2, 0] = OFF  # no note
    pcs = chunk_pitch_classes(w)
    torch.testing.assert_close(pcs[0, [0, 7]], torch.tensor([2 / 3, 1 / 3]))
    assert pcs[0].sum() == pytest.approx(1.0)
    assert pcs[1, 2] == 1.0 and pcs[1].sum() == 1.0
    assert pcs[2].sum() == 0


def test_the_pitch_term_draws_chunks_by_their_pitch_classes():
    """Code k one note of pitch 60 + k: a weight on a pitch class draws the one code of it."""
    prior = chromatic_prior()
    first_chunks = lambda: draw(prior, chunks=2)[:, 0].tolist()  # noqa: E731
    assert not set(first_chunks()) <= {5}  # the control: without the weight, other codes
    with torch.no_grad():
        prior.pitch.bias[5] = 60.0  # F
    assert first_chunks() == [5] * 16


def test_closing_chunks_are_where_the_last_chunk_of_an_ending_tune_first_was():
    z = torch.tensor([[1, 2, 1, 2], [1, 2, 3, 1], [1, 2, 3, 4], [1, 2, 1, 0], [1, 1, 2, 1]]).float()[..., None]
    valid = torch.ones(5, 4, dtype=torch.bool)
    valid[3, 3] = False  # a tune of 3 chunks: its last repeats its first
    copies = copy_targets(z, valid)
    ends = torch.tensor([True, False, True, True, True])
    closing = [[0, 1, 0, 0], [0] * 4, [0] * 4, [1, 0, 0, 0], [1, 0, 0, 0]]  # the last: at the first of two
    assert closing_chunks(copies, valid, ends).long().tolist() == closing


def test_a_chunk_the_form_repeats_last_is_drawn_to_close_the_tune():
    """With a strong weight on ending on F, the chunk a tune's form repeats as its last is the one code
    that ends there (the rising one from C), where the tune ends; elsewhere it varies."""
    prior = figure_prior()
    with torch.no_grad():
        prior.edge_close[5] = 60.0

    def first_chunks(form: list[int], ends: bool) -> set[int]:
        z, _, _ = prior.fill(
            torch.zeros(16, 3, PRIOR_CODES.z_dim),
            torch.zeros(16, 3, dtype=torch.bool),
            torch.zeros(16, 3, dtype=torch.bool),
            torch.ones(16, dtype=torch.long),
            torch.full((16,), ends),
            1.0,
            torch.Generator().manual_seed(3),
            form=torch.tensor([form] * 16),
        )
        return set(prior.nearest_code(z[:, 0]).tolist())

    assert first_chunks([-1, -1, 0], ends=True) == {0}
    assert len(first_chunks([-1, -1, 0], ends=False)) > 1  # a tune that goes on: no closing chunk
    assert len(first_chunks([-1, -1, -1], ends=True)) > 1  # the last chunk is new: it closes itself
    # and the likelihood scores the repeated chunk so: C-to-F as the closing chunk is all but certain
    z = prior.code_latents()[torch.tensor([[0, 7, 0], [1, 7, 1]])]
    ties, valid, meter = torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool), torch.ones(2).long()
    with torch.no_grad():
        ll = prior.log_likelihood(z, ties, valid, meter, torch.full((2,), 3), torch.ones(2, dtype=torch.bool))["z"]
    assert float(ll[1]) < float(ll[0]) - 30


def forms_cache() -> dict:
    """Three tunes: AABA in 4/4 (4 chunks), ABAB CDCD in 4/4 (8 chunks), ABCA in 6/8 (4 chunks)."""
    cache = synthetic_cache(3)
    w = torch.arange(9 * 32, dtype=torch.int8).reshape(9, 32) % 50 + 2
    forms = [[0, 0, 1, 0], [0, 1, 0, 1, 2, 3, 2, 3], [4, 5, 6, 4]]
    windows = torch.cat([w[torch.tensor(f)] for f in forms])
    cache.update(
        {
            "windows": windows,
            "offsets": torch.tensor([0, 4, 12, 16]),
            "meters": torch.tensor([[4, 4], [4, 4], [6, 8]]),
            "names": ["a", "b", "c"],
        }
    )
    return cache


def test_tune_forms_say_which_earlier_chunk_each_chunk_repeats():
    from generation.vae.prior_train import tune_forms

    forms = tune_forms(forms_cache(), {"a", "b", "c"})["forms"]
    assert forms["meters"] == [[4, 4], [4, 4], [6, 8]] and forms["lengths"] == [4, 8, 4]
    assert forms["pointers"] == [[-1, 0, -1, 0], [-1, -1, 0, 1, -1, -1, 4, 5], [-1, -1, -1, 0]]
    assert tune_forms(forms_cache(), {"b"}, max_chunks=6)["forms"]["pointers"] == [[-1, -1, 0, 1, -1, -1]]


def test_new_tunes_take_their_repeat_structure_from_a_training_tune_of_their_meter():
    from generation.vae.prior_train import tune_forms

    torch.manual_seed(0)
    vae = MusicVAE(MEL_TINY)
    prior = chromatic_prior()
    prior.metrics = tune_forms(forms_cache(), {"a", "b", "c"})
    composer = LongformComposer(vae, prior, temperature=1.0)
    meters, ends = [(4, 4), (4, 4), (6, 8), (3, 4), (4, 4)], [True, False, True, True, True]
    form = composer.draw_forms(4, meters, ends, seed=3)
    whole, opening = [-1, 0, -1, 0], [-1, -1, 0, 1]  # the 4/4 tune of 4 chunks; the first 4 of the 8-chunk one
    assert form[0].tolist() in (whole, opening) and form[4].tolist() in (whole, opening)
    assert form[1].tolist() == opening  # a tune that does not end there: only a longer tune's opening
    assert form[2].tolist() == [-1, -1, -1, 0]
    assert form[3].tolist() == [-2] * 4  # no 3/4 training tune: the pointer decides
    # a tune that ends takes a whole tune of its length or a longer one's opening, both
    drawn = {tuple(f) for f in composer.draw_forms(4, [(4, 4)] * 40, [True] * 40, seed=1).tolist()}
    assert drawn == {tuple(whole), tuple(opening)}
    assert {tuple(f) for f in composer.draw_forms(4, [(4, 4)] * 40, [False] * 40, seed=1).tolist()} == {tuple(opening)}
    assert composer.draw_forms(6, [(4, 4)], [True], seed=0).tolist() == [[-1, -1, 0, 1, -1, -1]]  # none of 6: longer
    tunes = composer.sample_batch(4, meters, ends, seed=3, copy_bias=-50.0)
    assert [t.source.tolist() for t in tunes[:3]] == form[:3].tolist()
    assert tunes[3].source.tolist() == [-1] * 4  # the pointer, with repeats made unlikely
    for t in tunes:
        codes = prior.nearest_code(t.z).tolist()
        for i, j in enumerate(t.source.tolist()):
            assert codes[i] == codes[j] if j >= 0 else codes[i] not in codes[:i]
    # what a sample job calls: 4/4 tunes of 4 chunks, each of a training tune's form
    assert {tuple(t.source.tolist()) for t in composer.sample(4, meter=(4, 4), seed=5, count=8)} <= {
        tuple(whole),
        tuple(opening),
    }
    pointer = composer.sample_batch(4, meters, ends, seed=3, copy_bias=-50.0, forms=False)
    assert all(t.source.tolist() == [-1] * 4 for t in pointer)
    assert np.array_equal(
        torch.stack([t.z for t in composer.sample_batch(4, meters, ends, seed=3, copy_bias=-50.0)]).numpy(),
        torch.stack([t.z for t in tunes]).numpy(),
    )  # reproducible with a seed


def test_a_tune_that_ends_takes_a_section_that_ends_where_a_training_tunes_sections_end():
    """Of 4/4 training tunes of 4, 6 and 8 chunks, a 4-chunk tune that ends takes the whole 4-chunk
    tune's form or the 8-chunk one's first half, never the first 4 of 6; one that does not end, a
    longer tune's opening."""
    composer = LongformComposer(MusicVAE(MEL_TINY), chromatic_prior(), temperature=1.0)
    forms = [[-1, 0, -1, 0], [-1, -1, -1, 1, 2, 0], [-1, -1, 0, 1, -1, -1, 4, 5]]
    composer.forms = {"meters": [[4, 4]] * 3, "lengths": [4, 6, 8], "pointers": forms}
    ends = {tuple(f) for f in composer.draw_forms(4, [(4, 4)] * 60, [True] * 60, seed=0).tolist()}
    assert ends == {tuple(forms[0]), tuple(forms[2][:4])}
    opens = {tuple(f) for f in composer.draw_forms(4, [(4, 4)] * 60, [False] * 60, seed=0).tolist()}
    assert opens == {tuple(forms[1][:4]), tuple(forms[2][:4])}
    assert composer.draw_forms(5, [(4, 4)], [True], seed=0)[0].tolist() in (forms[1][:5], forms[2][:5])  # none of 5, 10


def test_a_continuation_takes_a_form_that_begins_as_its_prompt_does():
    from generation.vae.longform import LatentTune
    from generation.vae.prior_train import tune_forms

    torch.manual_seed(0)
    prior = chromatic_prior()
    prior.metrics = tune_forms(forms_cache(), {"a", "b", "c"})
    composer = LongformComposer(MusicVAE(MEL_TINY), prior, temperature=1.0)
    codes = prior.code_latents()

    def prompt(*k: int) -> LatentTune:
        return LatentTune(codes[list(k)], torch.zeros(len(k), dtype=torch.bool), (4, 4), torch.full((len(k),), -2))

    # two different chunks: the 4-chunk AABA form does not begin so, the first 4 of ABAB CDCD does
    assert composer.repeat_structure(prompt(3, 5).z) == [-1, -1]
    for seed in range(3):
        tune = composer.continue_from(prompt(3, 5), 4, seed=seed)
        assert tune.source.tolist() == [-2, -2, 0, 1]
        assert torch.equal(tune.z[2], codes[3]) and torch.equal(tune.z[3], codes[5])
    # the same chunk twice: AABA begins so
    assert composer.continue_from(prompt(3, 3), 4, seed=0).source.tolist() == [-2, -2, -1, 0]
    # no form begins as A B B does: the pointer decides (repeats made unlikely)
    composer.default_copy_bias = -50.0
    assert composer.continue_from(prompt(3, 5, 5), 4, seed=0).source.tolist() == [-2, -2, -2, -1]
    composer.use_forms = False
    assert composer.continue_from(prompt(3, 5), 4, seed=0).source.tolist() == [-2, -2, -1, -1]
