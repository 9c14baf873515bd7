"""A split by melody content: the same tune in several files (or a transposed copy, or a variant that
shares most of its phrases) always lands in one split.

    python -m generation.vae.dedup --data /tmp/corpus_midi --out runs/split.json

Tunes are linked when
  - their whole melodies are equal up to transposition, or
  - at least half of the 4-bar-ish spans (two consecutive chunks, see chunks.py) of the shorter one
    occur in the other, up to transposition. Spans shared by more than `max_df` tunes are stock
    formulas (cadences, scales) and link nothing.
Linked tunes form groups (union-find); each group goes to train / valid / test by a hash of its
first member's name, 90 / 5 / 5 as before. The file-name split (data.split_files) put 164 of 4,368
16-bar test windows identical to a training window; `leak_report` measures the same for any split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from .chunks import melody_chunks
from .data import DEFAULT_CACHE_DIR, load_melodies, melody_windows, split_files
from .representation import FIRST_NOTE, Melody

SPLITS = ("train", "valid", "test")


def normalized(tokens: np.ndarray) -> bytes:
    """Tokens with pitches relative to the first note: equal for transposed copies."""
    t = np.asarray(tokens, dtype=np.int64)
    notes = t >= FIRST_NOTE
    if notes.any():
        t = np.where(notes, t - t[notes][0] + 100, t)
    return t.astype(np.int16).tobytes()


def _span_hashes(mel: Melody, min_notes: int = 4) -> set[bytes]:
    w = melody_chunks(mel).windows
    out = set()
    for k in range(len(w) - 1):
        pair = np.concatenate([w[k], w[k + 1]])
        if int((pair >= FIRST_NOTE).sum()) >= min_notes:
            out.add(hashlib.blake2b(normalized(pair), digest_size=12).digest())
    return out


def _trim(tokens: np.ndarray) -> np.ndarray:
    t = np.asarray(tokens, dtype=np.int64)
    nz = np.flatnonzero(t)
    return t[: nz[-1] + 1] if len(nz) else t


def content_groups(melodies: dict[str, Melody], threshold: float = 0.5, max_df: int = 20) -> list[list[str]]:
    names = sorted(melodies)
    parent = list(range(len(names)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    whole: dict[bytes, int] = {}
    spans: list[set[bytes]] = []
    index: dict[bytes, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        key = hashlib.blake2b(normalized(_trim(melodies[name].tokens)), digest_size=16).digest()
        if key in whole:
            union(i, whole[key])
        else:
            whole[key] = i
        spans.append(_span_hashes(melodies[name]))
        for h in spans[i]:
            index[h].append(i)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for members in index.values():
        if 1 < len(members) <= max_df:
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    shared[(members[a], members[b])] += 1
    for (i, j), n in shared.items():
        if n >= threshold * max(1, min(len(spans[i]), len(spans[j]))):
            union(i, j)
    groups: dict[int, list[str]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[find(i)].append(name)
    return sorted(groups.values(), key=lambda g: g[0])


def split_groups(groups: list[list[str]], seed: int = 1234, fractions=(0.9, 0.05, 0.05)) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for g in groups:
        u = int.from_bytes(hashlib.sha1(f"{seed}:{g[0]}".encode()).digest()[:8], "big") / 2**64
        name = "train" if u < fractions[0] else "valid" if u < fractions[0] + fractions[1] else "test"
        out[name].extend(g)
    return {k: sorted(v) for k, v in out.items()}


def leak_report(melodies: dict[str, Melody], split: dict[str, list[str]], length: int = 256) -> dict:
    """Held-out 16-bar windows (1-bar hop, as data.py cuts them) equal to a training window:
    exactly, and up to transposition."""
    exact, transp = set(), set()
    for n in split["train"]:
        for w in melody_windows(melodies[n], length):
            exact.add(w.astype(np.int8).tobytes())
            transp.add(normalized(w))
    out = {}
    for s in ("valid", "test"):
        wins = [w for n in split[s] for w in melody_windows(melodies[n], length)]
        out[s] = {
            "windows": len(wins),
            "identical_to_train": sum(w.astype(np.int8).tobytes() in exact for w in wins),
            "identical_up_to_transposition": sum(normalized(w) in transp for w in wins),
        }
    return out


def content_split(melodies: dict[str, Melody], seed: int = 1234) -> tuple[dict[str, list[str]], dict]:
    groups = content_groups(melodies)
    split = split_groups(groups, seed)
    info = {
        "tunes": len(melodies),
        "groups": len(groups),
        "tunes_in_groups_of_2_or_more": sum(len(g) for g in groups if len(g) > 1),
        "largest_group": max(len(g) for g in groups),
        "tunes_per_split": {k: len(v) for k, v in split.items()},
    }
    return split, info


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="split JSON: {train, valid, test: [tune names]} + report")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args(argv)
    melodies = load_melodies(args.data, Path(args.cache_dir))
    split, info = content_split(melodies, args.seed)
    by_file = split_files([Path(k) for k in melodies], seed=args.seed)
    old = {k: [str(p) for p in v] for k, v in by_file.items()}
    info["leaks_content_split"] = leak_report(melodies, split)
    info["leaks_file_split"] = leak_report(melodies, old)
    print(json.dumps(info, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**split, "report": info}, indent=1))


if __name__ == "__main__":
    main()
