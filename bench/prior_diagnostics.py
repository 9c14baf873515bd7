"""What a long-form prior gets wrong, on validation tunes: the measurements behind session 7's changes.

    python bench/prior_diagnostics.py --data /tmp/corpus_midi --latents runs/latents_keyC.pt \
        --split runs/split.json --priors served=generation/checkpoints/latent_prior.pt --draws 8 \
        --out bench/results/prior_diagnostics.json

Per prior (NAME=PATH):
  - teacher-forced head mass (`head`): at every new chunk after the first of the validation tunes,
    the mass the code head gives to chunks that add a pitch class outside the tune's diatonic scale
    so far, to chunks that widen its range by 5 semitones or more, and to chunks by the share of their
    melodic figures the tune has played (prior.figure_bins; any prior is measured, whether or not it
    scores figures), beside how often real chunks do; and where tunes start and end: the mass on
    chunks starting on C, E, G or A (key-normalized) at the first chunk, and on chunks ending on C or A
    at an ending tune's last chunk (drawn new) and at the chunk its last repeats (prior.closing_chunks);
    and per meter the service offers, the notes a new chunk has and the mass on chunks with a dotted
    eighth (a note of 3 sixteenths), head against real (`rhythm`);
  - samples (`samples`): --draws draws of one tune per validation window of 8 chunks (meter and
    "ends" as the window's), at --temperature / copy bias / top-p, with drawn forms and with the
    pointer's: the mean two-sample AUC and its standard error, the share of wholly diatonic tunes,
    copies per tune at each distance, and the share of tunes repeating 0..7 of their chunks.
The real windows' figures are reported beside them. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.vae.attributes import notes_of  # noqa: E402
from generation.vae.longform import LongformComposer  # noqa: E402
from generation.vae.longform_jobs import METERS as SERVED_METERS  # noqa: E402
from generation.vae.prior import (  # noqa: E402
    FIGURE_BINS,
    METERS,
    SPAN_EDGES,
    chunk_context,
    edge_pitches,
    figure_bins,
    last_chunks,
    outside_scale,
)
from generation.vae.prior_evaluate import held_out_tunes, real_windows, sample_like  # noqa: E402
from generation.vae.prior_train import chunk_codes, distinct_chunks, latent_set, make_batch  # noqa: E402
from generation.vae.two_sample import feature_matrix, two_sample_auc  # noqa: E402

WIDE = 5  # semitones: "widens the range by 5 or more" (SPAN_EDGES[2])
assert WIDE in SPAN_EDGES


def breaks(tune: torch.Tensor, chunks: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """[N, K]: chunks [., K, 3+] add a pitch class outside the scale of tunes' contexts [N, 3+]."""
    return table[tune[:, :1] | chunks[..., 0]] > table[tune[:, :1]]


def widens(tune: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
    """[N, K]: chunks widen the range of tunes (that have notes) by WIDE semitones or more."""
    wider = (chunks[..., 2] - tune[:, 2:3]).clamp(min=0) + (tune[:, 1:2] - chunks[..., 1]).clamp(min=0)
    return (wider >= WIDE) & (chunks[..., 2] >= 0) & (tune[:, 2:3] >= 0)


START_PCS, END_PCS = (0, 4, 7, 9), (0, 9)  # in the key-normalized C: its major triad and A; C or A


def pitch_class_in(pitches: torch.Tensor, pcs: tuple[int, ...]) -> torch.Tensor:
    return (pitches >= 0) & torch.isin(pitches % 12, torch.tensor(pcs))


FIGURE_LABELS = ("0", "(0,1/4]", "(1/4,1/2]", "(1/2,3/4]", "(3/4,1)", "1", "no figure")
assert len(FIGURE_LABELS) == FIGURE_BINS


def figure_mass(prior, played: torch.Tensor, meter: int, p: torch.Tensor, real: torch.Tensor) -> tuple:
    """[FIGURE_BINS] head mass and real counts by the share of a chunk's figures the tunes [N] have
    `played` [N, V] (the meter's codes with probabilities p [N, K]; real chunks' steps [N, steps]),
    binned as the prior's figure term bins them (for any codebook prior, whether it has the term)."""
    has = played.sum(-1) > 0
    bins = prior.figure_pair_bins()[prior.figure_pairs_played(meter, played)]
    bins = torch.where(has[:, None], bins, FIGURE_BINS - 1)
    real_hot = prior.figure_hot(real)
    real_bins = figure_bins((played * real_hot).sum(-1, keepdim=True), real_hot.sum(-1), has)[:, 0]
    head = torch.zeros(len(p), FIGURE_BINS).scatter_add_(1, bins, p).sum(0)
    return head, torch.bincount(real_bins, minlength=FIGURE_BINS).float()


def rhythm_stats(windows: torch.Tensor) -> torch.Tensor:
    """[N, 2] float: each window's [N, steps] notes, and whether one of them lasts 3 sixteenths."""
    notes = [notes_of(w) for w in windows.long().numpy()]
    return torch.tensor([[len(n), float(any(d == 3 for _, d, _ in n))] for n in notes])


@torch.no_grad()
def head_mass(prior, cache: dict, split: dict) -> dict[str, float]:
    table = outside_scale()
    train = latent_set(cache, set(split["train"]))
    rows, _ = distinct_chunks(train)
    valid = latent_set(cache, set(split["valid"]), originals_only=True)
    valid.codes = chunk_codes(prior, cache, rows)
    codes = chunk_context(prior.code_windows)
    sums = {"outside_scale_head": 0.0, "outside_scale_real": 0.0, "widens_5_head": 0.0, "widens_5_real": 0.0}
    # where a tune starts and ends: the first chunk's first note on C, E, G or A; an ending tune's
    # last chunk (drawn, not a repeat) and the chunk its last repeats (`closes`) ending on C or A
    edges = {f"{k}_{w}": 0.0 for k in ("start", "end", "closing") for w in ("head", "real", "count")}
    code_first, code_last = prior.code_edges()
    figures_head, figures_real = torch.zeros(FIGURE_BINS), torch.zeros(FIGURE_BINS)
    served = {METERS.index(m): f"{m[0]}/{m[1]}" for m in SERVED_METERS}
    code_rhythm = rhythm_stats(prior.code_windows)
    rhythm = {name: torch.zeros(5) for name in served.values()}  # head notes, dotted; real notes, dotted; count
    count = 0
    for i in range(0, len(valid.lengths), 128):
        b = make_batch(valid, list(range(i, min(i + 128, len(valid.lengths)))), prior.cfg.max_chunks, None)
        zn = prior.standardize(b["z"])
        h = prior.hidden(zn, b["ties"], b["meter"], b["length"], b["ends"])
        tune = prior.tune_so_far(zn, b["windows"], b["valid"], every=True, copies=b["copies"], ends=b["ends"])
        chunks = chunk_context(b["windows"])
        first, last = edge_pitches(b["windows"])
        new = b["valid"] & ~b["copies"].any(-1)
        kinds = {
            "start": torch.zeros_like(new),
            "end": last_chunks(b["valid"]) & b["ends"][:, None],
            "closing": tune.closes,
        }
        kinds["start"][:, 0] = True
        for m in b["meter"].unique().tolist():
            bi, pi = torch.nonzero((b["meter"] == m)[:, None] & new, as_tuple=True)
            if not len(bi):
                continue
            p = prior.code_logits(h[bi, pi], m, tune[bi, pi]).softmax(-1)
            sub = prior.meter_codes(m)
            if m in served:
                real_rhythm = rhythm_stats(b["windows"][bi, pi])
                rhythm[served[m]] += torch.cat(
                    [(p @ code_rhythm[sub]).sum(0), real_rhythm.sum(0), torch.ones(1) * len(bi)]
                )
            for kind, at in kinds.items():
                rows = at[bi, pi]
                pcs, real = (START_PCS, first) if kind == "start" else (END_PCS, last)
                code_pitch = (code_first if kind == "start" else code_last)[sub]
                edges[f"{kind}_head"] += float((p[rows] * pitch_class_in(code_pitch, pcs)[None]).sum())
                edges[f"{kind}_real"] += float(pitch_class_in(real[bi[rows], pi[rows]], pcs).sum())
                edges[f"{kind}_count"] += float(rows.sum())
            later = pi > 0  # the other measurements: every new chunk after the first
            bi, pi, p = bi[later], pi[later], p[later]
            here = tune[bi, pi]
            ctx = here.context
            sub = codes[sub]
            real = chunks[bi, pi][:, None]
            sums["outside_scale_head"] += float((p * breaks(ctx, sub[None], table)).sum())
            sums["outside_scale_real"] += float(breaks(ctx, real, table).sum())
            sums["widens_5_head"] += float((p * widens(ctx, sub[None])).sum())
            sums["widens_5_real"] += float(widens(ctx, real).sum())
            head, real_count = figure_mass(prior, here.figures, m, p, b["windows"][bi, pi])
            figures_head += head
            figures_real += real_count
            count += len(bi)
    share = lambda t: dict(zip(FIGURE_LABELS, (t / max(1, count)).round(decimals=3).tolist()))  # noqa: E731
    return (
        {k: v / max(1, count) for k, v in sums.items()}
        | {"figures_played_share_head": share(figures_head), "figures_played_share_real": share(figures_real)}
        | {"new_chunks": count}
        | {
            f"{kind}_on_tonic_{w}": edges[f"{kind}_{w}"] / max(1.0, edges[f"{kind}_count"])
            for kind in ("start", "end", "closing")
            for w in ("head", "real")
        }
        | {f"{kind}_chunks": int(edges[f"{kind}_count"]) for kind in ("start", "end", "closing")}
        | {
            "rhythm": {
                name: dict(
                    zip(
                        ("notes_head", "dotted_head", "notes_real", "dotted_real"),
                        (round(x, 3) for x in (t[:4] / t[4].clamp(min=1)).tolist()),
                    )
                )
                | {"new_chunks": int(t[4])}
                for name, t in rhythm.items()
            }
        }
    )


def structure(windows: list[np.ndarray]) -> dict[str, list[float]]:
    """Copies per tune at each distance 1..n-1 and the share of tunes repeating 0..n-1 chunks."""
    n = len(windows[0])
    distance, repeated = np.zeros(n), np.zeros(n)
    for w in windows:
        k = 0
        for i in range(1, n):
            earlier = [j for j in range(i) if np.array_equal(w[j], w[i])]
            if earlier:
                k += 1
                distance[i - max(earlier)] += 1
        repeated[k] += 1
    return {
        "copies_per_tune_by_distance": (distance[1:] / len(windows)).round(3).tolist(),
        "share_repeating_k_chunks": (repeated / len(windows)).round(3).tolist(),
    }


def diatonic_share(tokens: list[np.ndarray], steps: list[int]) -> float:
    return float((feature_matrix(tokens, steps)[:, 13] == 1.0).mean())  # feature 13: in-scale share


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--latents", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--priors", nargs="+", required=True, metavar="NAME=PATH")
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.9)
    p.add_argument("--copy-bias", type=float, default=0.5)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--windows", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results/prior_diagnostics.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    _, chunked, split, _ = held_out_tunes(args.data)
    cache = torch.load(args.latents, weights_only=True)
    real = real_windows(chunked, split["valid"], 8, args.windows, seed=1)
    steps = [r["steps"] for r in real]
    xr = feature_matrix([r["tokens"] for r in real], steps)
    groups = np.array([r["name"] for r in real])
    report: dict = {
        "setting": {k: getattr(args, k) for k in ("temperature", "copy_bias", "top_p", "draws", "windows")},
        "real": {
            "diatonic_share": diatonic_share([r["tokens"] for r in real], steps),
            **structure([r["windows"] for r in real]),
        },
        "priors": {},
    }
    for spec in args.priors:
        name, path = spec.split("=", 1)
        composer = LongformComposer.load(path)
        entry: dict = {"path": path, "head": head_mass(composer.prior, cache, split), "samples": {}}
        for forms in [True, False] if composer.forms else [False]:
            aucs, diatonic, windows = [], [], []
            for seed in tqdm(range(args.draws), desc=f"{name} forms={forms}"):
                toks, wins, _ = sample_like(
                    composer, real, 8, args.temperature, seed, args.copy_bias, args.top_p, forms=forms
                )
                aucs.append(two_sample_auc(xr, feature_matrix(toks, steps), groups, bootstrap=0)["auc"])
                diatonic.append(diatonic_share(toks, steps))
                windows += list(wins)
            entry["samples"]["drawn_forms" if forms else "pointer_forms"] = {
                "auc_mean": float(np.mean(aucs)),
                "auc_standard_error": float(np.std(aucs) / np.sqrt(len(aucs))),
                "aucs": aucs,
                "diatonic_share": float(np.mean(diatonic)),
                **structure(windows),
            }
        report["priors"][name] = entry
        print(name, json.dumps(entry, indent=1), flush=True)
    report["seconds"] = time.time() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
