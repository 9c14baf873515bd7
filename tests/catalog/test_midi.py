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


def dense_midi(target_bytes: int = 1_000_000) -> bytes:
    """A valid type-0 file of back-to-back short notes in running status, as dense as MIDI gets
    (about 250,000 notes in 1 MB)."""
    events = bytearray(b"\x00\x90\x3c\x40")  # delta 0, note-on C4
    pair = b"\x01\x3c\x00\x00\x3c\x40"  # delta 1, note-off (velocity 0), delta 0, note-on again
    events += pair * ((target_bytes - 40) // len(pair))
    events += b"\x01\x3c\x00\x00\xff\x2f\x00"  # last note-off, end of track
    return (
        b"MThd"
        + (6).to_bytes(4, "big")
        + b"\x00\x00\x00\x01\x01\xe0"
        + b"MTrk"
        + len(events).to_bytes(4, "big")
        + events
    )


def test_note_scan_agrees_with_pretty_midi():
    from catalog.midi import count_note_ons

    pm = pretty_midi.PrettyMIDI()
    melody = pretty_midi.Instrument(program=0)
    melody.notes += [pretty_midi.Note(80, 60 + i % 12, i * 0.25, i * 0.25 + 0.2) for i in range(40)]
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes += [pretty_midi.Note(100, 36, i * 0.5, i * 0.5 + 0.1) for i in range(10)]
    bass = pretty_midi.Instrument(program=33)
    bass.notes += [pretty_midi.Note(70, 40, i, i + 0.9) for i in range(8)]
    bass.control_changes.append(pretty_midi.ControlChange(7, 100, 0.0))
    bass.pitch_bends.append(pretty_midi.PitchBend(200, 0.5))
    pm.instruments += [melody, drums, bass]
    pm.lyrics.append(pretty_midi.Lyric("la", 0.0))
    buffer = io.BytesIO()
    pm.write(buffer)
    assert count_note_ons(buffer.getvalue()) == 48
    assert count_note_ons(make_midi([60] * 7)) == 7
    dense = dense_midi(10_000)
    assert count_note_ons(dense) == sum(len(i.notes) for i in pretty_midi.PrettyMIDI(io.BytesIO(dense)).instruments)


def test_a_dense_file_is_refused_before_the_expensive_parse(monkeypatch):
    """1 MB of back-to-back notes took 11 s in pretty_midi before the note limit was looked at."""
    import catalog.midi

    parsed = []
    monkeypatch.setattr(catalog.midi.pretty_midi, "PrettyMIDI", lambda *a, **k: parsed.append(1))
    with pytest.raises(InvalidMidi) as excinfo:
        analyze_midi(dense_midi(), **LIMITS)
    assert excinfo.value.code == "too_many_notes"
    assert parsed == [], "pretty_midi parsed the whole file before the note limit was checked"
