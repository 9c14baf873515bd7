from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from generation.vae.representation import (
    FIRST_NOTE,
    HOLD,
    OFF,
    VOCAB_SIZE,
    MelodyError,
    canonicalize,
    extract_melody,
    midi_to_tokens,
    pitch_to_token,
    tokens_to_midi,
    tokens_to_midi_bytes,
)

from .conftest import write_melody


def random_tokens(rng: np.random.Generator, length: int) -> np.ndarray:
    kinds = rng.choice([0, 1, 2], size=length, p=[0.5, 0.15, 0.35])
    toks = np.where(kinds == 0, HOLD, np.where(kinds == 1, OFF, rng.integers(FIRST_NOTE, VOCAB_SIZE, length)))
    return canonicalize(toks)


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8), (2, 4)])
def test_tokens_midi_round_trip_is_exact(meter):
    rng = np.random.default_rng(sum(meter))
    for _ in range(30):
        toks = random_tokens(rng, 64)
        data = tokens_to_midi_bytes(toks, meter=meter)
        back = midi_to_tokens(data, length=len(toks))
        assert np.array_equal(back, toks)


def test_round_trip_extreme_pitches_and_repeated_notes():
    toks = np.array([pitch_to_token(21), pitch_to_token(21), HOLD, OFF, HOLD, pitch_to_token(108), HOLD, HOLD])
    assert np.array_equal(midi_to_tokens(tokens_to_midi_bytes(toks), length=8), toks)


def test_canonicalize_drops_offs_during_silence():
    assert canonicalize([OFF, HOLD, 30, OFF, OFF]).tolist() == [HOLD, HOLD, 30, OFF, HOLD]


@pytest.mark.parametrize("meter,bar", [((3, 4), 12), ((6, 8), 12), ((2, 4), 8), ((4, 4), 16)])
def test_downbeats_follow_the_meter(tmp_path, meter, bar):
    path = write_melody(tmp_path / "m.mid", [60, 62, 64, 65] * 6, meter=meter)
    mel = extract_melody(str(path))
    assert mel.meter == meter
    assert np.all(np.diff(mel.downbeats) == bar)


def test_highest_voice_wins_and_drums_are_ignored():
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    low, high, drums = pretty_midi.Instrument(0), pretty_midi.Instrument(0), pretty_midi.Instrument(0, is_drum=True)
    low.notes.append(pretty_midi.Note(80, 48, 0.0, 1.0))  # 8 steps
    high.notes.append(pretty_midi.Note(80, 72, 0.25, 0.5))  # steps 2..3
    drums.notes.append(pretty_midi.Note(80, 100, 0.0, 1.0))
    pm.instruments += [low, high, drums]
    toks = extract_melody(pm).tokens.tolist()
    assert toks == [pitch_to_token(48), HOLD, pitch_to_token(72), HOLD, pitch_to_token(48), HOLD, HOLD, HOLD, OFF]


def test_bad_midi_raises_melody_error():
    with pytest.raises(MelodyError, match="not a readable MIDI"):
        extract_melody(b"this is not midi")
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0, is_drum=True))
    pm.instruments[0].notes.append(pretty_midi.Note(80, 36, 0, 1))
    with pytest.raises(MelodyError, match="no pitched"):
        extract_melody(pm)


def test_bad_tokens_raise_melody_error():
    with pytest.raises(MelodyError):
        tokens_to_midi([0, 1, VOCAB_SIZE])
