"""MIDI bytes -> loudness-normalized Ogg Vorbis bytes, with FluidSynth and a General MIDI SoundFont.

Pipeline (all in a temporary folder):
1. `fluidsynth` renders the MIDI to raw 32-bit float stereo (float, so nothing clips yet);
2. the release tail is cut to a fixed length after the last note, with a short fade;
3. integrated loudness is measured as ITU-R BS.1770-4 (K-weighting, 400 ms blocks, absolute and
   relative gates), the gain that brings it to the target is applied, and a look-ahead peak limiter
   keeps samples under the ceiling (a loud, spiky tune ends up slightly under the target instead of
   clipping);
4. the result is dithered to 16-bit PCM and encoded by `oggenc` (vorbis-tools) at the nominal bitrate.

Debian packages: fluidsynth, fluid-soundfont-gm (or timgm6mb-soundfont), vorbis-tools.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

CONTENT_TYPE = "audio/ogg"
FILE_EXTENSION = "ogg"
CHANNELS = 2
# Below this sample peak a render counts as silent (a broken SoundFont renders zeros, not an error).
SILENCE_PEAK = 1e-5


class AudioRenderError(Exception):
    """This MIDI could not be rendered to audio."""


class RendererMissing(AudioRenderError):
    """A program the renderer needs (fluidsynth, oggenc) is not installed: a deployment problem."""


class SoundFontMissing(AudioRenderError):
    """The configured SoundFont is missing or is not a SoundFont: a deployment problem."""


@dataclasses.dataclass(frozen=True)
class RenderedAudio:
    data: bytes
    duration_seconds: float
    loudness_lufs: float  # after normalization (before encoding)
    gain_db: float  # applied to reach the target
    peak_dbfs: float  # sample peak after limiting
    render_seconds: float  # wall time of the whole pipeline
    content_type: str = CONTENT_TYPE


def check_audio_renderer(soundfont: str | os.PathLike) -> Path:
    """Raise a clear error unless fluidsynth, oggenc and a readable SoundFont are there."""
    missing = [name for name in ("fluidsynth", "oggenc") if shutil.which(name) is None]
    if missing:
        raise RendererMissing(
            f"Audio rendering needs {' and '.join(missing)} on PATH; install the Debian packages "
            "`fluidsynth` and `vorbis-tools` (apt-get install --no-install-recommends fluidsynth vorbis-tools)."
        )
    path = Path(soundfont)
    hint = (
        "install `fluid-soundfont-gm` (or `timgm6mb-soundfont`), or point REFRAIN_SOUNDFONT "
        "at a General MIDI .sf2/.sf3 file"
    )
    if not path.is_file():
        raise SoundFontMissing(f"The SoundFont {path} does not exist; {hint}.")
    try:
        with path.open("rb") as handle:
            header = handle.read(12)
    except OSError as exc:
        raise SoundFontMissing(f"The SoundFont {path} cannot be read ({exc}); {hint}.") from exc
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise SoundFontMissing(f"{path} is not a SoundFont (no RIFF sfbk header); {hint}.")
    return path


def render_audio(
    midi_bytes: bytes,
    *,
    soundfont: str | os.PathLike,
    bitrate_kbps: int = 96,
    sample_rate: int = 44100,
    target_lufs: float = -16.0,
    peak_ceiling_dbfs: float = -1.5,
    tail_seconds: float = 0.75,
    timeout_seconds: float = 300.0,
    end_time: float | None = None,
) -> RenderedAudio:
    """Render MIDI to normalized Ogg Vorbis. Raises AudioRenderError (or a subclass) on failure.

    `end_time`: when the last note ends, in seconds, if the caller has parsed the file already
    (otherwise it is parsed here to know where the audio's tail is cut)."""
    started = time.perf_counter()
    soundfont = check_audio_renderer(soundfont)
    if end_time is None:
        end_time = _midi_end_time(midi_bytes)
    with tempfile.TemporaryDirectory(prefix="refrain-render-") as folder:
        tmp = Path(folder)
        (tmp / "in.mid").write_bytes(midi_bytes)
        _run(
            [
                "fluidsynth",
                "-n",
                "-i",
                "-q",
                "-g",
                "0.5",
                "-r",
                str(sample_rate),
                "-O",
                "float",
                "-T",
                "raw",
                "-E",
                "little",
                "-F",
                str(tmp / "out.raw"),
                str(soundfont),
                str(tmp / "in.mid"),
            ],
            timeout=timeout_seconds,
            what="fluidsynth",
        )
        # float32 and in place from here on: a 15-minute track is 300 MB of samples, not 2.7 GB of copies.
        raw_path = tmp / "out.raw"
        samples = np.fromfile(raw_path, dtype="<f4") if raw_path.exists() else np.zeros(0, dtype="<f4")
        raw_path.unlink(missing_ok=True)
        samples = samples[: len(samples) // CHANNELS * CHANNELS].reshape(-1, CHANNELS)
        if not len(samples) or peak_level(samples) < SILENCE_PEAK:
            raise AudioRenderError(f"FluidSynth rendered silence with {soundfont}; is it a General MIDI SoundFont?")
        samples = _trim_tail(samples, sample_rate, end_time + tail_seconds)
        loudness = integrated_loudness(samples, sample_rate)
        if not math.isfinite(loudness):
            raise AudioRenderError("The rendered audio is too quiet to measure (below -70 LUFS throughout).")
        gain_db = target_lufs - loudness
        samples *= np.float32(10 ** (gain_db / 20))
        limited = peak_level(samples) > 10 ** (peak_ceiling_dbfs / 20)
        if limited:
            limit_peaks(samples, sample_rate, 10 ** (peak_ceiling_dbfs / 20), in_place=True)
        final_loudness = integrated_loudness(samples, sample_rate) if limited else target_lufs
        peak = peak_level(samples)
        _write_wav_pcm16(tmp / "norm.wav", samples, sample_rate)
        _run(
            ["oggenc", "-Q", "-b", str(int(bitrate_kbps)), "-o", str(tmp / "out.ogg"), str(tmp / "norm.wav")],
            timeout=timeout_seconds,
            what="oggenc",
        )
        data = (tmp / "out.ogg").read_bytes()
    return RenderedAudio(
        data=data,
        duration_seconds=len(samples) / sample_rate,
        loudness_lufs=round(final_loudness, 2),
        gain_db=round(gain_db, 2),
        peak_dbfs=round(20 * math.log10(peak), 2),
        render_seconds=time.perf_counter() - started,
    )


def _run(command: list[str], *, timeout: float, what: str) -> None:
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise RendererMissing(f"{what} is not installed ({exc}).") from exc
    except subprocess.TimeoutExpired as exc:
        raise AudioRenderError(f"{what} took longer than {timeout:.0f} s.") from exc
    if result.returncode != 0:
        message = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[-500:]
        raise AudioRenderError(f"{what} failed (exit {result.returncode}): {message}")


def _midi_end_time(midi_bytes: bytes) -> float:
    import pretty_midi

    try:
        return float(pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes)).get_end_time())
    except Exception as exc:
        raise AudioRenderError(f"The MIDI file cannot be read: {exc}") from exc


def _trim_tail(samples: np.ndarray, sample_rate: int, seconds: float, fade_seconds: float = 0.3) -> np.ndarray:
    """Cut reverb and release to `seconds`, fading out the last `fade_seconds` (in place)."""
    keep = min(len(samples), max(1, int(round(seconds * sample_rate))))
    samples = samples[:keep]
    fade = min(keep, int(fade_seconds * sample_rate))
    if fade > 1:
        samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=samples.dtype)[:, None]
    return samples


def peak_level(samples: np.ndarray) -> float:
    """Largest absolute sample value, without an absolute-value copy of the whole signal."""
    return float(max(samples.max(), -samples.min())) if samples.size else 0.0


def _k_weighting_power(n: int, sample_rate: int) -> np.ndarray:
    """|H(f)|^2 of the BS.1770 K-weighting (high shelf + high pass) at the rfft bins of length n."""

    def biquad(b, a):
        z = np.exp(-1j * 2 * np.pi * np.fft.rfftfreq(n, 1 / sample_rate) / sample_rate)
        return (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)

    # Shelf: +4 dB above ~1.7 kHz (head effects); high pass at ~38 Hz. Derived from BS.1770's analogue
    # prototypes as libebur128 does, so the filter is right at any rate (it gives the standard's
    # published coefficients at 48 kHz).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = biquad(
        [(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
        [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0],
    )
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sample_rate)
    a0 = 1 + k / q + k * k
    high_pass = biquad([1.0, -2.0, 1.0], [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return np.abs(shelf * high_pass) ** 2


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (BS.1770-4 gating); -inf for silence.

    The K-weighted power of each 100 ms sub-block comes from its spectrum (Parseval), which keeps
    this vectorized in numpy; 400 ms gating blocks with 75 % overlap are sums of four sub-blocks.
    """
    if samples.ndim == 1:
        samples = samples[:, None]
    step = sample_rate // 10
    count = len(samples) // step
    if count < 4:  # shorter than one gating block: measure it whole, zero-padded to 400 ms
        padded = np.zeros((4 * step, samples.shape[1]))
        padded[: len(samples)] = samples
        samples, count = padded, 4
    weights = _k_weighting_power(step, sample_rate)
    weights[1 : -1 if step % 2 == 0 else None] *= 2  # one-sided spectrum
    power = np.zeros(count)
    chunk = 100  # sub-blocks per FFT batch (10 s), so memory stays small on long tracks
    for first in range(0, count, chunk):
        last = min(count, first + chunk)
        segment = samples[first * step : last * step]
        for channel in range(samples.shape[1]):
            spectrum = np.fft.rfft(segment[:, channel].reshape(last - first, step), axis=1)
            power[first:last] += (np.abs(spectrum) ** 2 @ weights) / step**2
    blocks = np.convolve(power, np.ones(4) / 4, mode="valid")  # 400 ms blocks, 100 ms hop
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10(blocks)
    kept = blocks[block_lufs > -70.0]
    if not len(kept):
        return float("-inf")
    relative_gate = -0.691 + 10 * np.log10(kept.mean()) - 10.0
    kept = blocks[(block_lufs > -70.0) & (block_lufs > relative_gate)]
    return float(-0.691 + 10 * np.log10(kept.mean()))


def limit_peaks(
    samples: np.ndarray, sample_rate: int, ceiling: float, block_seconds: float = 0.01, *, in_place: bool = False
) -> np.ndarray:
    """Look-ahead limiter: a smooth gain curve that never lets |sample| exceed `ceiling`.

    Per block the needed gain is min(1, ceiling / peak); each block takes the smallest need of
    itself and its neighbours, and the curve is interpolated linearly between block centres, so
    the gain ramps down before a peak (one block ahead) and back up after it.
    """
    if peak_level(samples) <= ceiling:
        return samples
    out = samples if in_place else samples.copy()
    block = max(1, int(sample_rate * block_seconds))
    count = -(-len(out) // block)
    peaks = np.empty(count)
    step = 1000  # blocks per pass (10 s)
    for first in range(0, count, step):
        segment = out[first * block : (first + step) * block]
        whole = len(segment) // block
        if whole:
            rows = segment[: whole * block].reshape(whole, -1)
            peaks[first : first + whole] = np.maximum(rows.max(axis=1), -rows.min(axis=1))
        if len(segment) % block:
            peaks[first + whole] = peak_level(segment[whole * block :])
    need = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    spread = need.copy()
    spread[1:] = np.minimum(spread[1:], need[:-1])
    spread[:-1] = np.minimum(spread[:-1], need[1:])
    centres = np.arange(count) * block + block / 2
    frames = step * block
    for start in range(0, len(out), frames):
        stop = min(len(out), start + frames)
        curve = np.interp(np.arange(start, stop), centres, spread).astype(out.dtype)
        out[start:stop] *= curve[:, None]
    np.clip(out, -ceiling, ceiling, out=out)  # the interpolation guarantees this; the clip is a seatbelt
    return out


def _write_wav_pcm16(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV with TPDF dither, written 10 s at a time (seeded: the same MIDI gives the same bytes)."""
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        for start in range(0, len(samples), 10 * sample_rate):
            part = samples[start : start + 10 * sample_rate]
            noise = rng.random(part.shape, dtype=np.float32) - rng.random(part.shape, dtype=np.float32)
            pcm = np.clip(np.round(part * np.float32(32767.0) + noise), -32768, 32767).astype("<i2")
            out.writeframes(pcm.tobytes())
