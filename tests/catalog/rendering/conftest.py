"""Fixtures for the pure rendering functions: real corpus MIDI, and a skip where the renderer is absent."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

SOUNDFONT = "/usr/share/sounds/sf2/default-GM.sf2"

requires_renderer = pytest.mark.skipif(
    not (shutil.which("fluidsynth") and shutil.which("oggenc") and shutil.which("oggdec") and Path(SOUNDFONT).exists()),
    reason="needs the Debian packages fluidsynth, vorbis-tools and fluid-soundfont-gm (make system-deps)",
)


@pytest.fixture(scope="session")
def corpus_midi() -> bytes:
    """A real tune: the first Essen folk song shorter than 30 s (symusic's ABC -> MIDI)."""
    import io

    import pretty_midi

    from catalog.corpus import iter_abc_tunes

    for tune in iter_abc_tunes("essen"):
        if hasattr(tune, "midi") and pretty_midi.PrettyMIDI(io.BytesIO(tune.midi)).get_end_time() < 30:
            return tune.midi
    raise AssertionError("no short Essen tune")


def decode_ogg(data: bytes, tmp_path: Path) -> tuple[np.ndarray, int]:
    """Ogg Vorbis bytes -> float samples (frames x channels) with oggdec, as a browser would decode them."""
    src, dst = tmp_path / "a.ogg", tmp_path / "a.wav"
    src.write_bytes(data)
    subprocess.run(["oggdec", "-Q", "-o", str(dst), str(src)], check=True)
    with wave.open(str(dst)) as handle:
        rate, channels = handle.getframerate(), handle.getnchannels()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.reshape(-1, channels).astype(np.float64) / 32768.0, rate
