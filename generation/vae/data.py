"""Any folder of MIDI files -> cached melodies -> train/validation/test windows.

- The split is by file (tune) with a fixed seed, so no tune is in two splits.
- Every file is parsed once; the melodies of the whole folder are cached in one .pt file
  (plain tensors and lists, loadable with weights_only=True), keyed by the folder's listing.
- Windows start on the tune's own barlines (2/4, 3/4, 6/8... all kept), have a fixed length in
  16th steps (32 for 2 bars, 256 for 16 bars of 16 steps: the model's "bar" is 16 sixteenths),
  and are materialized once as one int8 tensor per split. Transposition happens per batch,
  on the training split only.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .representation import FIRST_NOTE, VOCAB_SIZE, Melody, MelodyError, extract_melody, window

MIDI_SUFFIXES = (".mid", ".midi")
DEFAULT_CACHE_DIR = Path(os.environ.get("REFRAIN_CACHE_DIR", Path.home() / ".cache" / "refrain"))


def list_midi_files(root: str | Path) -> list[Path]:
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no .mid/.midi files under {root}")
    return files


def split_files(files: list[Path], seed: int = 1234, fractions=(0.9, 0.05, 0.05)) -> dict[str, list[Path]]:
    """Deterministic split by file name hash + seed, independent of the listing order."""

    def key(p: Path) -> float:
        h = hashlib.sha1(f"{seed}:{p.name}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    out: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
    for p in files:
        u = key(p)
        name = "train" if u < fractions[0] else "valid" if u < fractions[0] + fractions[1] else "test"
        out[name].append(p)
    return out


def _parse(path: str) -> tuple[str, dict | None]:
    try:
        m = extract_melody(path)
    except MelodyError:
        return path, None
    # numpy, not torch: torch tensors cross process boundaries as file descriptors (runs out).
    return path, {
        "tokens": m.tokens.copy(),
        "active": m.active.copy(),
        "downbeats": m.downbeats.astype(np.int64),
        "meter": list(m.meter),
    }


def _to_torch(item: dict) -> dict:
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in item.items()}


def melody_cache_path(root: str | Path, cache_dir: Path = DEFAULT_CACHE_DIR, files: list[Path] | None = None) -> Path:
    """Where load_melodies caches a folder: keyed by its listing (names, sizes, mtimes). `files`:
    the folder's list_midi_files, when the caller has it already."""
    root = Path(root)
    files = list_midi_files(root) if files is None else files
    listing = "\n".join(f"{p.relative_to(root)}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files)
    digest = hashlib.sha1(listing.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"melodies-{digest}.pt"


def load_melodies(root: str | Path, cache_dir: Path = DEFAULT_CACHE_DIR, workers: int = 2) -> dict[str, Melody]:
    """All parsable melodies under root, keyed by relative path; cached after the first call.

    `root` may also be such a cache file itself (melodies-*.pt): a machine that trains then needs
    neither the MIDI folder nor a MIDI parser.
    """
    root = Path(root)
    if root.is_file() and root.suffix == ".pt":
        cache = root
    else:
        files = list_midi_files(root)
        cache = melody_cache_path(root, cache_dir, files)
    if cache.exists():
        raw = torch.load(cache, weights_only=True)
    else:
        raw = {}
        paths = [str(p) for p in files]
        if workers > 1 and len(paths) > 200:
            with ProcessPoolExecutor(workers) as ex:
                results = ex.map(_parse, paths, chunksize=64)
                for path, item in tqdm(results, total=len(paths), desc="parse MIDI"):
                    if item is not None:
                        raw[str(Path(path).relative_to(root))] = _to_torch(item)
        else:
            for path in tqdm(paths, desc="parse MIDI", disable=len(paths) < 200):
                _, item = _parse(path)
                if item is not None:
                    raw[str(Path(path).relative_to(root))] = _to_torch(item)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(raw, tmp)
        tmp.replace(cache)
    return {
        k: Melody(
            tokens=v["tokens"].numpy(),
            active=v["active"].numpy(),
            downbeats=v["downbeats"].numpy(),
            meter=tuple(v["meter"]),
        )
        for k, v in raw.items()
    }


def melody_windows(
    mel: Melody, length: int, hop_bars: int = 1, max_pad: float = 0.25, min_notes: int = 2
) -> list[np.ndarray]:
    """Windows of `length` steps starting on every `hop_bars`-th barline.

    A window may run past the tune's end by at most `max_pad` of its length (padded with silence),
    so short tunes still give 16-bar windows; near-silent windows are skipped.
    """
    out = []
    n = len(mel.tokens)
    for start in mel.downbeats[::hop_bars].tolist():
        if start + length * (1 - max_pad) > n:
            break
        w = window(mel, start, length)
        if int((w >= FIRST_NOTE).sum()) >= min_notes:
            out.append(w)
    return out


@dataclass
class Splits:
    train: torch.Tensor  # int8 [N, T]
    valid: torch.Tensor
    test: torch.Tensor
    files: dict[str, list[str]]


def build_splits(
    root: str | Path,
    length: int,
    hop_bars: int = 1,
    seed: int = 1234,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    max_pad: float = 0.25,
) -> Splits:
    melodies = load_melodies(root, cache_dir)
    by_split = split_files([Path(k) for k in melodies], seed=seed)
    tensors, names = {}, {}
    for split, paths in by_split.items():
        rel = [str(p) for p in paths]
        # Eval splits use a hop of one bar too: more windows, same tunes; they never train.
        wins = [w for r in rel for w in melody_windows(melodies[r], length, hop_bars, max_pad)]
        arr = np.stack(wins) if wins else np.zeros((0, length), dtype=np.int64)
        tensors[split] = torch.from_numpy(arr.astype(np.int8))
        names[split] = rel
    return Splits(tensors["train"], tensors["valid"], tensors["test"], names)


def transpose_batch(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each melody by a random number of semitones in [-max_shift, max_shift], kept in range."""
    x = x.long()  # always int64 out: the windows are stored as int8
    if max_shift <= 0:
        return x
    is_note = x >= FIRST_NOTE
    big = torch.full_like(x, 10_000)
    lo = torch.where(is_note, x, big).amin(1)  # lowest note token per row
    hi = torch.where(is_note, x, -big).amax(1)
    shift = torch.randint(-max_shift, max_shift + 1, (x.shape[0],), generator=generator).to(x.device)
    down_room = (lo - FIRST_NOTE).clamp(min=0)
    up_room = (VOCAB_SIZE - 1 - hi).clamp(min=0)
    shift = torch.maximum(torch.minimum(shift, up_room), -down_room)
    return torch.where(is_note, x + shift[:, None], x)
