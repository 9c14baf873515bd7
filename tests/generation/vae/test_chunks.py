"""Tune <-> chunks: the meter rule, exact round trips for every meter, and the boundary rule."""

from __future__ import annotations

import numpy as np
import pytest

from generation.vae.chunks import WINDOW, chunk_steps, join_chunks, melody_chunks, melody_tokens, transpose_melody
from generation.vae.representation import FIRST_NOTE, HOLD, OFF, extract_melody, pitch_to_token

from .conftest import write_melody

METER_STEPS = {(2, 4): 32, (4, 4): 32, (2, 2): 32, (3, 4): 24, (6, 8): 24, (3, 8): 24, (9, 8): 18, (5, 2): 32}


@pytest.mark.parametrize("meter,steps", sorted(METER_STEPS.items()))
def test_chunk_length_per_meter(meter, steps):
    assert chunk_steps(meter) == steps


@pytest.mark.parametrize("meter", [(2, 4), (3, 4), (4, 4), (6, 8), (3, 8), (9, 8)])
def test_round_trip_every_meter(tmp_path, meter):
    rng = np.random.default_rng(sum(meter))
    pitches = rng.integers(55, 80, 50).tolist()
    durations = rng.choice([1, 2, 3, 4, 6, 8, 12], 17).tolist()
    mel = extract_melody(write_melody(tmp_path / "t.mid", pitches, meter=meter, durations=durations))
    ch = melody_chunks(mel)
    assert ch.steps == chunk_steps(meter) and ch.windows.shape[1] == WINDOW
    if ch.steps < WINDOW:  # the padding is silence
        assert (ch.windows[:, ch.steps + 1 :] == HOLD).all()
    assert len(ch.windows) * ch.steps >= int(np.flatnonzero(mel.tokens >= FIRST_NOTE).max())
    joined = join_chunks(ch.windows, ch.ties, ch.steps)
    np.testing.assert_array_equal(joined, melody_tokens(mel, len(ch.windows)))


def test_note_held_across_a_boundary_is_not_restruck(tmp_path):
    # 4/4: a whole note starting on step 24 runs over the chunk boundary at step 32
    mel = extract_melody(write_melody(tmp_path / "t.mid", [60, 62, 64], durations=[16, 8, 16]))
    ch = melody_chunks(mel)
    assert ch.ties.tolist() == [False, True]
    assert ch.windows[1, 0] == pitch_to_token(64)  # the chunk alone starts with its note...
    joined = join_chunks(ch.windows, ch.ties, ch.steps)
    assert joined[32] == HOLD  # ...but the tune holds it across the boundary
    assert (joined >= FIRST_NOTE).sum() == 3


def test_same_pitch_struck_again_on_the_boundary_stays_struck(tmp_path):
    mel = extract_melody(write_melody(tmp_path / "t.mid", [60, 64, 64], durations=[16, 16, 16]))
    ch = melody_chunks(mel)
    assert ch.ties.tolist() == [False, False]
    joined = join_chunks(ch.windows, ch.ties, ch.steps)
    assert joined[32] == pitch_to_token(64) and (joined >= FIRST_NOTE).sum() == 3


def test_chunk_that_starts_silent_ends_the_previous_note():
    a = np.zeros(WINDOW, dtype=np.int64)
    a[0] = pitch_to_token(60)  # sounds to the end of chunk 1
    b = np.zeros(WINDOW, dtype=np.int64)
    b[8] = pitch_to_token(62)  # chunk 2 starts with a rest
    joined = join_chunks(np.stack([a, b]), np.array([False, False]), WINDOW)
    assert joined[32] == OFF and joined[40] == pitch_to_token(62)


def test_transposition_keeps_rhythm_and_refuses_leaving_the_range(tmp_path):
    mel = extract_melody(write_melody(tmp_path / "t.mid", [60, 67, 72, 64]))
    up = transpose_melody(mel, 3)
    assert ((up.tokens >= FIRST_NOTE) == (mel.tokens >= FIRST_NOTE)).all()
    assert int(up.tokens[0]) == int(mel.tokens[0]) + 3
    assert transpose_melody(mel, 40) is None


def test_tonic_shift_moves_the_relative_major_tonic_to_c(tmp_path):
    from generation.vae.chunks import tonic_shift

    d_major = [62, 64, 66, 67, 69, 71, 73, 74, 69, 66, 62, 62]  # D major, ending on D
    mel = extract_melody(write_melody(tmp_path / "d.mid", d_major, durations=[4, 2, 2, 4]))
    assert tonic_shift(mel) == -2
    assert tonic_shift(transpose_melody(mel, -2)) == 0
    b_minor = [59, 61, 62, 64, 66, 67, 69, 71, 66, 62, 59, 59]  # relative minor of D: the same shift
    assert tonic_shift(extract_melody(write_melody(tmp_path / "b.mid", b_minor, durations=[4, 2, 2, 4]))) == -2
