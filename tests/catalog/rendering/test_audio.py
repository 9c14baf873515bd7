"""MIDI -> normalized Ogg Vorbis: duration, level, clipping, loudness meter, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pretty_midi
import pytest

from catalog.rendering import audio
from catalog.rendering.audio import SoundFontMissing, integrated_loudness, limit_peaks, render_audio
from tests.catalog.rendering.conftest import SOUNDFONT, decode_ogg, requires_renderer
from tests.conftest import make_midi

RATE = 44100


def _sine(amplitude: float, seconds: float, channels: int = 2, freq: float = 997.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return np.repeat((amplitude * np.sin(2 * np.pi * freq * t))[:, None], channels, axis=1)


def test_loudness_meter_matches_bs1770_reference_levels():
    # BS.1770: a 997 Hz sine at full scale in both channels reads 0 LUFS; in one channel, -3.01.
    assert integrated_loudness(_sine(1.0, 3), RATE) == pytest.approx(0.0, abs=0.1)
    assert integrated_loudness(_sine(1.0, 3, channels=1), RATE) == pytest.approx(-3.01, abs=0.1)
    assert integrated_loudness(_sine(0.1, 3), RATE) == pytest.approx(-20.0, abs=0.1)


# BS.1770-4's published K-weighting coefficients at 48 kHz (Table 1 and 2): stage 1 the high shelf,
# stage 2 the high pass. The meter derives its filter from the analogue prototypes instead.
BS1770_48K_STAGES = [
    ([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585]),
    ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621]),
]


def _bs1770_gain_db(freq: float) -> float:
    z = np.exp(-2j * np.pi * freq / 48000)
    response = 1.0
    for b, a in BS1770_48K_STAGES:
        response *= (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)
    return float(20 * np.log10(abs(response)))


@pytest.mark.parametrize("freq", [30.0, 40.0, 100.0, 5000.0])
def test_loudness_meter_weighs_frequencies_as_the_k_filter_does(freq):
    """A bass tone reads quieter than a 997 Hz tone of the same amplitude (the high pass), a treble one
    louder (the shelf), by what the standard's own 48 kHz filter gives at that frequency."""
    rate = 48000
    t = np.arange(3 * rate) / rate
    level = {
        f: integrated_loudness(np.repeat(0.5 * np.sin(2 * np.pi * f * t)[:, None], 2, 1), rate) for f in (freq, 997.0)
    }
    expected = _bs1770_gain_db(freq) - _bs1770_gain_db(997.0)
    assert level[freq] - level[997.0] == pytest.approx(expected, abs=0.1)


def test_loudness_meter_gates_silence_and_reads_silence_as_minus_infinity():
    tone = _sine(0.1, 8)  # long enough that the few half-silent blocks at its edges barely count
    with_pause = np.concatenate([tone, np.zeros((RATE * 10, 2)), tone])
    assert integrated_loudness(with_pause, RATE) == pytest.approx(integrated_loudness(tone, RATE), abs=0.2)
    assert integrated_loudness(np.zeros((RATE, 2)), RATE) == float("-inf")
    assert np.isfinite(integrated_loudness(_sine(0.5, 0.1), RATE))  # shorter than one gating block


def test_limiter_keeps_every_sample_under_the_ceiling_and_leaves_quiet_audio_alone():
    loud = _sine(0.5, 2)
    loud[RATE : RATE + 100] *= 5.0  # a burst at 1 s, 2.5 times over full scale
    limited = limit_peaks(loud, RATE, 0.8)
    assert np.max(np.abs(limited)) <= 0.8 + 1e-12
    # Only the neighbourhood of the burst is turned down (look-ahead and release of a few ms).
    far = np.r_[0 : RATE - 2000, RATE + 2000 : 2 * RATE]
    assert np.array_equal(limited[far], loud[far])
    quiet = _sine(0.3, 1)
    assert limit_peaks(quiet, RATE, 0.8) is quiet


def test_missing_or_bogus_soundfont_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: f"/usr/bin/{name}")  # programs "present"
    with pytest.raises(SoundFontMissing, match="does not exist.*fluid-soundfont-gm"):
        audio.check_audio_renderer(tmp_path / "missing.sf2")
    bogus = tmp_path / "bogus.sf2"
    bogus.write_bytes(b"not a soundfont at all")
    with pytest.raises(SoundFontMissing, match="not a SoundFont"):
        render_audio(make_midi(), soundfont=bogus)


def test_missing_programs_are_a_clear_error(monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(audio.RendererMissing, match="fluidsynth and oggenc.*vorbis-tools"):
        audio.check_audio_renderer(SOUNDFONT)


@requires_renderer
def test_real_corpus_tune_renders_to_audible_unclipped_audio_of_the_right_length(corpus_midi, tmp_path):
    expected = pretty_midi.PrettyMIDI(io.BytesIO(corpus_midi)).get_end_time()
    rendered = render_audio(corpus_midi, soundfont=SOUNDFONT, bitrate_kbps=96, target_lufs=-16.0)
    assert rendered.data[:4] == b"OggS" and rendered.content_type == "audio/ogg"
    samples, rate = decode_ogg(rendered.data, tmp_path)
    assert rate == 44100 and samples.shape[1] == 2
    assert abs(len(samples) / rate - expected) < 1.0
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(samples**2)))
    assert rms_dbfs > -35.0, "not silent"
    assert np.max(np.abs(samples)) < 0.99, "no clipping after decoding"
    assert integrated_loudness(samples, rate) == pytest.approx(-16.0, abs=1.0)
    # About the nominal bitrate: 96 kbit/s is 12 KB per second of audio.
    assert 0.5 < len(rendered.data) / (12_000 * len(samples) / rate) < 1.6


@requires_renderer
def test_quiet_and_loud_inputs_come_out_at_the_same_loudness(tmp_path):
    def arpeggio(velocity: int) -> bytes:
        pm = pretty_midi.PrettyMIDI(io.BytesIO(make_midi([60, 64, 67, 72] * 4, step=0.5)))
        for note in pm.instruments[0].notes:
            note.velocity = velocity
        buffer = io.BytesIO()
        pm.write(buffer)
        return buffer.getvalue()

    levels = []
    for midi in (arpeggio(127), arpeggio(25)):
        samples, rate = decode_ogg(render_audio(midi, soundfont=SOUNDFONT).data, tmp_path)
        levels.append(integrated_loudness(samples, rate))
    assert abs(levels[0] - levels[1]) < 1.0, levels
