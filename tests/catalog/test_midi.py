import io

import pretty_midi
import pytest

from catalog.midi import InvalidMidi, analyze_midi, estimate_key, normalize_key, normalize_meter
from tests.conftest import make_midi

LIMITS = {"max_seconds": 900, "max_notes": 20_000}


def test_reads_metadata_of_a_valid_melody():
    info = analyze_midi(make_midi([60, 64, 67, 72], numerator=6, denominator=8, tempo=90), **LIMITS)
    assert info.note_count == 4
    assert (info.pitch_min, info.pitch_max) == (60, 72)
    assert info.time_signature == "6/8"
    assert info.tempo_bpm == pytest.approx(90)
    assert info.duration_seconds == pytest.approx(1.0)


def test_key_signature_in_the_file_wins_over_estimation():
    info = analyze_midi(make_midi([57, 60, 64], key_number=12 + 9), **LIMITS)  # A minor
    assert info.key == "A minor"


def test_key_is_estimated_without_a_signature():
    g_major_scale = [67, 69, 71, 72, 74, 76, 78, 79, 74, 71, 67]
    notes = [pretty_midi.Note(90, p, i, i + 1) for i, p in enumerate(g_major_scale)]
    assert estimate_key(notes) == "G major"


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty_file"),
        (b"RIFF....WAVEfmt ", "not_midi"),
        (b"%PDF-1.7 hello", "not_midi"),
        (make_midi()[:30], "corrupt_midi"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x05\x01\xe0MTrk\xff\xff\xff\xff", "corrupt_midi"),
    ],
)
def test_rejects_bytes_that_are_not_a_readable_midi_file(data, code):
    with pytest.raises(InvalidMidi) as excinfo:
        analyze_midi(data, **LIMITS)
    assert excinfo.value.code == code
    assert excinfo.value.message


def test_rejects_a_file_without_notes():
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(program=0))
    buffer = io.BytesIO()
    pm.write(buffer)
    with pytest.raises(InvalidMidi, match="no pitched notes"):
        analyze_midi(buffer.getvalue(), **LIMITS)


def test_drums_alone_do_not_count_as_notes():
    pm = pretty_midi.PrettyMIDI()
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(100, 36, 0, 0.5))
    pm.instruments.append(drums)
    buffer = io.BytesIO()
    pm.write(buffer)
    with pytest.raises(InvalidMidi) as excinfo:
        analyze_midi(buffer.getvalue(), **LIMITS)
    assert excinfo.value.code == "no_notes"


def test_rejects_over_the_duration_limit():
    with pytest.raises(InvalidMidi) as excinfo:
        analyze_midi(make_midi([60, 62], step=40.0), max_seconds=60, max_notes=100)
    assert excinfo.value.code == "too_long"
    assert "limit is 1 minutes" in excinfo.value.message


def test_rejects_over_the_note_limit():
    with pytest.raises(InvalidMidi) as excinfo:
        analyze_midi(make_midi([60] * 50), max_seconds=900, max_notes=10)
    assert excinfo.value.code == "too_many_notes"


@pytest.mark.parametrize(
    "hint, expected",
    [
        ("Dmix", "D mixolydian"),
        ("Am", "A minor"),
        ("F#", "F# major"),
        ("Bb", "Bb major"),
        ("E dor", "E dorian"),
        ("G", "G major"),
        ("", ""),
        ("none", ""),
        ("Hp", ""),
    ],
)
def test_normalize_key(hint, expected):
    assert normalize_key(hint) == expected


@pytest.mark.parametrize("hint, expected", [("6/8", "6/8"), (" 3/4 ", "3/4"), ("none", ""), ("3/5", ""), ("0/4", "")])
def test_normalize_meter(hint, expected):
    assert normalize_meter(hint) == expected
