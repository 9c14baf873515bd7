"""Tiny MIDI melodies made on the fly (the tests never read the real corpus), and tiny untrained
long-form composers of both kinds of prior."""

from __future__ import annotations

import io
from pathlib import Path

import pretty_midi
import pytest
import torch

from generation.vae.config import MEL_TINY
from generation.vae.longform import LongformComposer
from generation.vae.model import MusicVAE
from generation.vae.prior import PRIOR_TINY, PRIOR_TINY_CODES, LatentPrior

# the served kind: a codebook normalized per meter, with the boundary, context and similarity terms
PRIOR_CODES = PRIOR_TINY_CODES


def write_melody(path: Path, pitches: list[int], *, step: float = 0.125, meter=(4, 4), durations=None) -> Path:
    """One note per entry; `step` seconds per 16th at 120 qpm; durations in 16ths (default 2)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(meter[0], meter[1], 0.0))
    inst = pretty_midi.Instrument(program=0)
    t = 0
    for i, p in enumerate(pitches):
        d = durations[i % len(durations)] if durations else 2
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=t * step, end=(t + d) * step))
        t += d
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def midi_folder(tmp_path: Path) -> Path:
    """24 short tunes in four meters, in nested folders."""
    root = tmp_path / "midi"
    meters = [(4, 4), (3, 4), (6, 8), (2, 4)]
    for i in range(24):
        sub = root / f"set{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        base = 55 + (i % 12)
        pitches = [base + (k * (i % 5 + 1)) % 12 for k in range(40)]
        write_melody(sub / f"tune{i:02d}.mid", pitches, meter=meters[i % 4], durations=[2, 1, 1, 4, 2])
    return root


@pytest.fixture(params=["mixture", "codebook"])
def composer(request) -> LongformComposer:
    """Both kinds of prior: a new chunk drawn from the Gaussian mixture, or one of a codebook's chunks."""
    torch.manual_seed(0)
    vae = MusicVAE(MEL_TINY)
    prior = LatentPrior(PRIOR_TINY if request.param == "mixture" else PRIOR_CODES)
    # spread the untrained mixture so different draws give different latents
    prior.z_std.fill_(1.0)
    if request.param == "codebook":  # twelve "chunks": random coordinates, sounding as the decoder renders them
        prior.code_coords.copy_(torch.randn(PRIOR_CODES.codebook, PRIOR_CODES.pca_dim))
        prior.code_windows.copy_(vae.generate(prior.code_latents(), greedy=True).to(torch.int8))
    return LongformComposer(vae, prior, temperature=1.0)
