"""The corpus as latent sequences: every tune's chunks encoded once by the 2-bar VAE (posterior means).

    python -m generation.vae.latent_data --data /tmp/corpus_midi --out runs/latents.pt

Each tune is encoded as it is and at `--shifts` random transpositions in [-5, 5] semitones (the
prior's transposition augmentation; encoding on the fly would cost more than the prior's training).
Identical windows are encoded once: a repeated chunk gets bit-identical latents, which is what
lets the prior learn to copy. The cache is a dict of plain tensors (weights_only loadable):

    {"names": [str], "meters": int [N, 2], "shifts": int [N], "offsets": int [N + 1],
     "z": fp16 [sum n, z_dim], "ties": bool [sum n], "windows": int8 [sum n, 32], "vae": str}

row i is tune names[i] transposed by shifts[i]; its chunks are offsets[i]:offsets[i + 1].
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_model
from .chunks import melody_chunks, tonic_shift, transpose_melody
from .data import DEFAULT_CACHE_DIR, load_melodies
from .model import MusicVAE
from .representation import Melody

DEFAULT_VAE = Path(__file__).resolve().parents[1] / "checkpoints" / "mel_2bar_large.pt"


@torch.no_grad()
def encode_windows(model: MusicVAE, windows: np.ndarray, batch: int = 1024, progress: bool = False) -> np.ndarray:
    """Posterior means of [N, 32] windows, each distinct window encoded once: float32 [N, z]."""
    uniq, inverse = np.unique(np.asarray(windows, dtype=np.int64), axis=0, return_inverse=True)
    out = np.zeros((len(uniq), model.cfg.z_dim), dtype=np.float32)
    for i in tqdm(range(0, len(uniq), batch), desc="encode", disable=not progress, mininterval=5):
        x = torch.from_numpy(uniq[i : i + batch])
        out[i : i + batch] = model.encode(x)[0].float().numpy()
    return out[inverse.reshape(-1)]


def build_latent_cache(
    melodies: dict[str, Melody],
    model: MusicVAE,
    shifts: int = 2,
    max_shift: int = 5,
    seed: int = 0,
    key_normalize: bool = False,
) -> dict:
    """`key_normalize`: each tune once, moved so its relative-major tonic is C (chunks.tonic_shift);
    otherwise the tune as it is plus `shifts` random transpositions."""
    rng = random.Random(seed)
    names, meters, shift_list, offsets, windows, ties = [], [], [], [0], [], []
    for name in sorted(melodies):
        mel = melodies[name]
        others = [s for s in range(-max_shift, max_shift + 1) if s != 0]
        for s in [tonic_shift(mel)] if key_normalize else [0] + rng.sample(others, shifts):
            m = transpose_melody(mel, s)
            if m is None:
                continue
            ch = melody_chunks(m)
            names.append(name)
            meters.append(list(ch.meter))
            shift_list.append(s)
            windows.append(ch.windows.astype(np.int8))
            ties.append(ch.ties)
            offsets.append(offsets[-1] + len(ch.windows))
    all_windows = np.concatenate(windows)
    z = encode_windows(model, all_windows, progress=True)
    return {
        "names": names,
        "meters": torch.tensor(meters, dtype=torch.long),
        "shifts": torch.tensor(shift_list, dtype=torch.long),
        "offsets": torch.tensor(offsets, dtype=torch.long),
        "z": torch.from_numpy(z).half(),
        "ties": torch.from_numpy(np.concatenate(ties)),
        "windows": torch.from_numpy(all_windows),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="MIDI folder or its melodies-*.pt cache")
    p.add_argument("--vae", default=str(DEFAULT_VAE))
    p.add_argument("--out", required=True)
    p.add_argument("--shifts", type=int, default=2, help="random transpositions per tune besides the original")
    p.add_argument("--key-normalize", action="store_true", help="each tune once, in C (relative major)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    melodies = load_melodies(args.data, Path(args.cache_dir))
    model, _ = load_model(args.vae)
    cache = build_latent_cache(melodies, model, shifts=args.shifts, key_normalize=args.key_normalize)
    cache["key_normalized"] = args.key_normalize
    cache["vae"] = str(args.vae)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(cache, args.out)
    print(f"{len(cache['names'])} sequences, {len(cache['z'])} chunks in {time.time() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
