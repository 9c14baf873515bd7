"""Evaluate the long-form composer (latent prior + 2-bar VAE) on held-out tunes of the content split.

    python -m generation.vae.prior_evaluate --prior runs/prior/prior.pt --data /tmp/corpus_midi \
        --out generation/checkpoints/latent_prior_eval.json --threads 2

1. The served temperature, copy bias and nucleus are chosen on the VALIDATION split: the lowest
   two-sample AUC (the mean of the 46-feature and the wide test's), averaged over --selection-seeds
   draws at 8 and at 16 chunks, among --temperatures x
   --copy-biases x --top-ps whose repeat share at 8 chunks lies in 0.2-0.4 and whose lowest overlap
   area is at least 0.90 (where any such setting is); then everything below runs
   on the TEST split at that setting and at temperature 1.0. (One draw's AUC moves by up to 0.05:
   one draw at 8 chunks chose temperature 0.8 in session 5, and three draws could not tell 0.9 from
   1.0; the served 0.9 won on six.)
2. Prior samples of 8 and 16 chunks (16 and 32 bars of 4/4; 3/4 and 6/8 chunks are 2 bars) against
   real held-out windows of as many chunks, one sample per real window with the same meter and the
   same "ends the tune" flag (repeat structures drawn from the training tunes' forms when the prior
   has them, and, at the served temperature, left to the pointer as well; and as the service draws
   them, every one a whole tune that ends, `..._whole_tunes`): structure statistics (structure.py), MGEval overlap areas (metrics.py),
   share of samples containing a training window (8 chunks, up to transposition), and the classifier
   two-sample tests (two_sample.py: 46 features, and the wide set of 140) with their real-vs-real
   controls.
3. At 8 chunks of 32 steps (2/4, 4/4, 2/2 tunes: 256 steps, what the 16-bar models make), the same
   against the demo 16-bar VAE (mel_16bar.pt, at its served temperature 0.5) and the n-gram and
   LSTM-LM baselines (baselines.py, trained here on the content split's training tunes).
3b. Per meter the service offers (2/4, 3/4, 4/4, 6/8), 16 bars (4 chunks of 2/4) at the served
   setting, against every test window of that meter: one sample per window as in 2 (`matched`),
   and as the service draws them, every one a whole tune that ends (`whole_tunes`). The pooled test
   of 2 mixes meters, which the classifier must tell apart first; a listener hears one meter at a
   time.
4. Whole-tune reconstruction through the chunk path (encode every chunk, decode greedily, join).
Writes the JSON report and a PNG of piano rolls (real | generated) beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .baselines import LSTMLanguageModel, NGramModel
from .checkpoint import set_prior_metrics
from .chunks import TuneChunks, bars_per_chunk, join_chunks, melody_chunks, melody_tokens
from .data import DEFAULT_CACHE_DIR, load_melodies
from .dedup import content_split, normalized
from .longform import LongformComposer, shift_tokens
from .longform_jobs import METERS as SERVED_METERS
from .metrics import FEATURES, compare_sets
from .representation import steps_per_bar
from .structure import structure_stats
from .two_sample import (
    N_FEATURES,
    N_WIDE_EXTRA,
    features,
    real_vs_real,
    two_sample_auc,
    wide_extra,
    wide_feature_matrix,
)

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "mel_16bar.pt"


def held_out_tunes(data: str | Path, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> tuple[dict, dict, dict, dict]:
    """(the corpus folder's melodies by name; the same chunked; the content split; its report): what
    every evaluation of the long-form composer starts from."""
    melodies = load_melodies(data, Path(cache_dir))
    split, split_info = content_split(melodies)
    return melodies, {n: melody_chunks(m) for n, m in melodies.items()}, split, split_info


def real_windows(chunked: dict[str, TuneChunks], names: list[str], n: int, limit: int, seed: int = 0) -> list[dict]:
    """Non-overlapping windows of n chunks from each tune (offsets 0, n, 2n...), up to `limit`."""
    out = []
    for name in names:
        ch = chunked[name]
        for s in range(0, len(ch.windows) - n + 1, n):
            ties = ch.ties[s : s + n].copy()
            ties[0] = False
            out.append(
                {
                    "name": name,
                    "tokens": join_chunks(ch.windows[s : s + n], ties, ch.steps),
                    "windows": ch.windows[s : s + n],
                    "meter": ch.meter,
                    "steps": ch.steps,
                    "ends": s + n == len(ch.windows),
                }
            )
    rng = np.random.default_rng(seed)
    if len(out) > limit:
        out = [out[i] for i in sorted(rng.choice(len(out), limit, replace=False))]
    return out


def window_features(real: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The two-sample features of real windows (`two_sample.features`, and the wide set's), computed
    once per window and kept in it: every generated set is scored against the same windows."""
    for r in real:
        if "features" not in r:
            r["features"] = features(r["tokens"], r["steps"])
            r["wide_features"] = np.concatenate(
                [r["features"], wide_extra(r["tokens"], r["steps"], steps_per_bar(*r["meter"]))]
            )
    if not real:
        return np.zeros((0, N_FEATURES)), np.zeros((0, N_FEATURES + N_WIDE_EXTRA))
    return np.stack([r["features"] for r in real]), np.stack([r["wide_features"] for r in real])


def _span_key(windows: np.ndarray, steps: int) -> bytes:
    return hashlib.blake2b(normalized(np.concatenate([w[:steps] for w in windows])), digest_size=12).digest()


def training_spans(chunked: dict[str, TuneChunks], names: list[str], n: int = 8) -> set[bytes]:
    keys = set()
    for name in names:
        ch = chunked[name]
        for s in range(len(ch.windows) - n + 1):
            keys.add(_span_key(ch.windows[s : s + n], ch.steps))
    return keys


def copies_training(windows_list: list[np.ndarray], steps: list[int], train_keys: set[bytes], n: int = 8) -> float:
    hits = 0
    for w, st in zip(windows_list, steps):
        hits += any(_span_key(w[s : s + n], st) in train_keys for s in range(len(w) - n + 1))
    return hits / max(1, len(windows_list))


def score_set(
    tokens, steps, bars, windows, real: list[dict], train_keys, fake_groups=None, bootstrap: int = 500
) -> dict[str, Any]:
    """Everything measured for one generated set against its real reference set (`bootstrap`: draws
    for the AUC's interval, 0 for none)."""
    out: dict[str, Any] = {"structure": structure_stats(tokens, steps, bars)}
    if windows is not None:
        out["copies_training_window"] = copies_training(windows, steps, train_keys)
    oa = compare_sets(tokens, [r["tokens"] for r in real])
    out["overlap"] = {k: v for k, v in oa.items() if k.startswith("oa_")}
    out["overlap"]["min"] = min(oa[f"oa_{f}"] for f in FEATURES)
    groups = np.array([r["name"] for r in real])
    xr, xr_wide = window_features(real)
    xf = wide_feature_matrix(tokens, steps, bars)  # its first N_FEATURES columns are `features`'
    out["two_sample"] = two_sample_auc(xr, xf[:, :N_FEATURES], groups, fake_groups, bootstrap=bootstrap)
    out["two_sample_wide"] = two_sample_auc(xr_wide, xf, groups, fake_groups, bootstrap=bootstrap)
    return out


def sample_like(
    composer: LongformComposer,
    real: list[dict],
    n: int,
    temperature: float,
    seed: int,
    bias: float,
    top_p: float | None = None,
    forms: bool | None = None,
):
    meters, ends = [r["meter"] for r in real], [r["ends"] for r in real]
    tunes = composer.sample_batch(n, meters, ends, temperature, seed, copy_bias=bias, top_p=top_p, forms=forms)
    z = torch.cat([t.z for t in tunes])
    windows = composer.decode_chunks(z).reshape(len(tunes), n, -1)
    tokens = [shift_tokens(join_chunks(w, t.ties.numpy(), t.steps), t.shift) for w, t in zip(windows, tunes)]
    copied = float(np.mean([(t.source >= 0).float().mean().item() for t in tunes]))
    return tokens, list(windows), copied


def reconstruction(composer: LongformComposer, melodies, names: list[str], limit: int = 400) -> dict[str, Any]:
    from .train import evaluate_tf

    names = names[:limit]
    t0 = time.time()
    tunes = composer.encode([melodies[n] for n in names])
    decoded = composer.decode(tunes)
    correct = total = 0
    by_meter: dict[str, list[int]] = {}
    for name, tune, dec in zip(names, tunes, decoded):
        ref = melody_tokens(melodies[name], tune.n_chunks)
        c = int((ref == dec).sum())
        correct += c
        total += len(ref)
        acc = by_meter.setdefault(f"{tune.meter[0]}/{tune.meter[1]}", [0, 0])
        acc[0] += c
        acc[1] += len(ref)
    windows = torch.from_numpy(np.concatenate([melody_chunks(melodies[n]).windows for n in names]))
    tf = evaluate_tf(composer.vae, windows, torch.device("cpu"))
    return {
        "tunes": len(names),
        "sampled_accuracy_whole_tunes": correct / max(1, total),
        "teacher_forced_accuracy_chunks": tf["accuracy"],
        "sampled_accuracy_by_meter": {k: v[0] / v[1] for k, v in sorted(by_meter.items(), key=lambda x: -x[1][1])},
        "exact_tunes": float(
            np.mean(
                [np.array_equal(melody_tokens(melodies[n], t.n_chunks), d) for n, t, d in zip(names, tunes, decoded)]
            )
        ),
        "seconds": time.time() - t0,
    }


def draw_roll(ax, tokens: np.ndarray, bar: int, chunk: int | None = None, colour=lambda step: "C0") -> None:
    """A piano roll of `tokens` on a matplotlib axis: a box per note (coloured by its start step),
    bar lines light, chunk lines darker, pitch axis fitted to the notes, no ticks."""
    import matplotlib.pyplot as plt

    from .attributes import notes_of

    notes = notes_of(tokens)
    for s, d, p in notes:
        ax.add_patch(plt.Rectangle((s, p - 0.4), d - 0.15, 0.8, color=colour(s)))
    for b in range(0, len(tokens) + 1, bar):
        ax.axvline(b, color="0.85", lw=0.5, zorder=0)
    for b in range(0, len(tokens) + 1, chunk) if chunk else ():
        ax.axvline(b, color="0.55", lw=0.8, zorder=0)
    pitches = [p for _, _, p in notes] or [60]
    ax.set_xlim(0, len(tokens))
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_yticks([])
    ax.set_xticks([])


def plot_rolls(real: list[dict], fake: list[np.ndarray], fake_meta: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(real)
    fig, axes = plt.subplots(rows, 2, figsize=(14, 1.7 * rows), squeeze=False)
    for r in range(rows):
        for c, (toks, meta, label) in enumerate(
            [(real[r]["tokens"], real[r], "real (held-out)"), (fake[r], fake_meta[r], "generated")]
        ):
            ax = axes[r][c]
            draw_roll(
                ax, toks, steps_per_bar(*meta["meter"]), meta["steps"], lambda step, c=c: "C0" if c == 0 else "C3"
            )
            ax.set_title(
                f"{label}, {meta['meter'][0]}/{meta['meter'][1]}, {len(toks) // meta['steps']} chunks", fontsize=7
            )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def per_meter(composer: LongformComposer, real: list[dict], temperature: float, bias: float, seed: int) -> dict:
    """One meter's real windows against samples drawn like them (`matched`) and as whole tunes that
    end, as the service draws them (`whole_tunes`): both AUCs with their intervals, the lowest
    overlap area, the degenerate share (nothing but the count for a meter without windows)."""
    if not real:
        return {"n_real": 0}
    n = len(real[0]["windows"])
    steps, bars = [r["steps"] for r in real], [steps_per_bar(*r["meter"]) for r in real]
    out: dict[str, Any] = {"n_chunks": n, "n_real": len(real), "n_tunes": len({r["name"] for r in real})}
    reference = structure_stats([r["tokens"] for r in real], steps, bars)
    out |= {"real_repeat_share": reference["repeat_share"], "real_degenerate": reference["degenerate"]}
    for mode, like in (("matched", real), ("whole_tunes", [dict(r, ends=True) for r in real])):
        toks, _, _ = sample_like(composer, like, n, temperature, seed, bias)
        s = score_set(toks, steps, bars, None, real, set())
        out[mode] = {
            "auc": s["two_sample"],
            "auc_wide": s["two_sample_wide"],
            "oa_min": s["overlap"]["min"],
            "degenerate": s["structure"]["degenerate"],
            "repeat_share": s["structure"]["repeat_share"],
        }
    return out


def served_setting(sweep: list[dict[str, Any]]) -> dict[str, Any]:
    """The validation sweep's row to serve: the lowest AUC among the settings whose repeat share is in
    the band real tunes show (0.2-0.4) and whose lowest overlap area is at least 0.90 (the issue's
    targets), each condition dropped where no setting meets it. The AUCs of neighbouring settings
    differ by less than their intervals, the repeat share and the overlap do not: in session 9 a
    nucleus cut of 0.9 lowered the AUC by about a draw's noise and the pitch-class overlap below 0.90.
    A setting without a nucleus cut is served over one with a cut whose AUC is lower by less than the
    standard error of that AUC (over its draws at both lengths and both tests): the cut drops every
    tune's rarest chunks and costs a sort per chunk, so it must win by more than the noise (in
    session 11, 0.688 against 0.689, and the test split's 32-bar pitch-class overlap fell to 0.87)."""
    rows = [r for r in sweep if 0.2 <= r["repeat_share"] <= 0.4] or sweep
    rows = [r for r in rows if r["oa_min"] >= 0.9] or rows
    best = min(rows, key=lambda r: r["auc"])
    draws = [a for k in ("auc_8", "auc_16", "auc_wide_8", "auc_wide_16") for a in best.get(k, [])]
    se = float(np.std(draws) / np.sqrt(len(draws))) if len(draws) > 1 else 0.0
    uncut = [r for r in rows if r.get("top_p") is None or r["top_p"] >= 1.0]
    if uncut and best not in uncut:
        close = min(uncut, key=lambda r: r["auc"])
        if close["auc"] - best["auc"] < se:
            return close
    return best


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    t0 = time.time()
    melodies, chunked, split, split_info = held_out_tunes(args.data, args.cache_dir)
    composer = LongformComposer.load(args.prior, bf16_decode=args.bf16_decode)
    train_keys = training_spans(chunked, split["train"])
    report: dict[str, Any] = {"prior": str(args.prior), "split": split_info}

    # 1. served temperature, chosen on the validation split
    valid_real = {n: real_windows(chunked, split["valid"], n, args.valid_samples, seed=1) for n in (8, 16)}
    sweep = []
    codebook = bool(composer.prior is not None and composer.prior.cfg.codebook)
    top_ps = args.top_ps if codebook else [None]
    for temp, bias, top_p in [(t, b, p) for t in args.temperatures for b in args.copy_biases for p in top_ps]:
        runs: dict[int, list[dict]] = {8: [], 16: []}
        for n, real in valid_real.items():
            steps, bars = [r["steps"] for r in real], [steps_per_bar(*r["meter"]) for r in real]
            for k in range(args.selection_seeds):
                toks, wins, copied = sample_like(composer, real, n, temp, args.seed + k, bias, top_p)
                # only the AUC itself is compared: no interval
                runs[n].append({**score_set(toks, steps, bars, wins, real, train_keys, bootstrap=0), "copied": copied})
        at8 = runs[8]
        sweep.append(
            {
                "temperature": temp,
                "copy_bias": bias,
                "top_p": top_p,
                # the mean of both tests' AUCs (46 features, and the wide set's 140)
                "auc": float(
                    np.mean([s[k]["auc"] for n in runs for s in runs[n] for k in ("two_sample", "two_sample_wide")])
                ),
                "auc_8": [s["two_sample"]["auc"] for s in runs[8]],
                "auc_16": [s["two_sample"]["auc"] for s in runs[16]],
                "auc_wide_8": [s["two_sample_wide"]["auc"] for s in runs[8]],
                "auc_wide_16": [s["two_sample_wide"]["auc"] for s in runs[16]],
                "repeat_share": float(np.mean([s["structure"]["repeat_share"] for s in at8])),
                "degenerate": float(np.mean([s["structure"]["degenerate"] for s in at8])),
                "oa_min": float(np.mean([s["overlap"]["min"] for s in at8])),
                "copy_choices": float(np.mean([s["copied"] for s in at8])),
            }
        )
        print("valid", sweep[-1], flush=True)
    best = served_setting(sweep)
    served, bias, top_p = best["temperature"], best["copy_bias"], best["top_p"]
    composer.default_top_p = top_p  # every sample below at the chosen nucleus (None: the prior's own)
    report["temperature_selection_valid"] = sweep
    report["served_temperature"] = served
    report["served_copy_bias"] = bias
    report["served_top_p"] = top_p

    # 2. test split, 8 and 16 chunks, served temperature and 1.0
    report["test"] = {}
    examples: dict[str, Any] = {}
    for n in (8, 16):
        real = real_windows(chunked, split["test"], n, args.samples, seed=2)
        steps, bars = [r["steps"] for r in real], [steps_per_bar(*r["meter"]) for r in real]
        xr, xr_wide = window_features(real)
        names = np.array([r["name"] for r in real])
        entry: dict[str, Any] = {
            "n_chunks": n,
            "real": {
                "structure": structure_stats([r["tokens"] for r in real], steps, bars),
                "copies_training_window": copies_training([r["windows"] for r in real], steps, train_keys),
                "real_vs_real_auc": real_vs_real(xr, names),
                "real_vs_real_auc_wide": real_vs_real(xr_wide, names),
            },
        }
        # the served temperature and 1.0, (the ablation) the served one with repeats left to the pointer,
        # and the served one as the service draws new tunes: every one a whole tune that ends
        runs = [(temp, None, f"prior_T{temp:g}", False) for temp in sorted({served, 1.0})]
        runs += [(served, False, f"prior_T{served:g}_pointer_forms", False)] if composer.forms else []
        runs += [(served, None, f"prior_T{served:g}_whole_tunes", True)]
        for temp, forms, name, whole in runs:
            like = [dict(r, ends=True) for r in real] if whole else real
            toks, wins, copied = sample_like(composer, like, n, temp, args.seed, bias, forms=forms)
            res = score_set(toks, steps, bars, wins, real, train_keys)
            res["copy_choices_share"] = copied
            entry[name] = res
            print(n, name, json.dumps({k: v for k, v in res.items() if k != "overlap"}), flush=True)
            if temp == served and forms is None and not whole:
                examples[n] = (real, toks)
        report["test"][f"{n}_chunks"] = entry

    # 3. against the demo and the baselines at 16 bars of 4/4 (256 steps)
    real = [r for r in real_windows(chunked, split["test"], 8, 10**9, seed=2) if r["steps"] == 32]
    rng = np.random.default_rng(3)
    real = [real[i] for i in sorted(rng.choice(len(real), min(args.samples, len(real)), replace=False))]
    m = len(real)
    steps, bars = [32] * m, [16] * m
    comp: dict[str, Any] = {"n_real": m, "real_structure": structure_stats([r["tokens"] for r in real], steps, bars)}
    toks, wins, _ = sample_like(composer, real, 8, served, args.seed, bias)
    comp["prior_served"] = score_set(toks, steps, bars, wins, real, train_keys)
    from .sample import MelodyVAE

    demo = MelodyVAE.load(DEMO, device="cpu")
    demo_toks = list(demo.sample(m, temperature=0.5, seed=args.seed))
    comp["demo_mel_16bar_T0.5"] = score_set(
        demo_toks, steps, bars, [t.reshape(8, 32) for t in demo_toks], real, train_keys
    )
    train_w = np.concatenate(
        [
            np.stack(
                [join_chunks(chunked[n].windows[s : s + 8], None, 32) for s in range(0, len(chunked[n].windows) - 7, 2)]
            )
            for n in split["train"]
            if chunked[n].steps == 32 and len(chunked[n].windows) >= 8
        ]
    )
    ngram = NGramModel(order=4).fit(train_w)
    ng = list(ngram.sample(m, 256, temperature=1.0, seed=args.seed))
    comp["ngram"] = score_set(ng, steps, bars, [t.reshape(8, 32) for t in ng], real, train_keys)
    lm = LSTMLanguageModel(embed_dim=64, hidden=256, layers=1)
    lm_info = lm.fit(torch.from_numpy(train_w.astype(np.int8)), args.baseline_minutes, batch_size=64, transpose=5)
    lt = list(lm.sample(m, 256, temperature=1.0, seed=args.seed))
    comp["lstm_lm"] = score_set(lt, steps, bars, [t.reshape(8, 32) for t in lt], real, train_keys)
    comp["lstm_lm"]["training"] = lm_info
    report["vs_demo_and_baselines_16bar"] = comp
    for k in ("prior_served", "demo_mel_16bar_T0.5", "ngram", "lstm_lm"):
        print(
            "16bar",
            k,
            comp[k]["two_sample"],
            comp[k]["two_sample_wide"],
            comp[k]["structure"]["repeat_share"],
            flush=True,
        )

    # 3b. per served meter, 16 bars (4 chunks of 2/4, 8 of the others)
    report["per_meter_16bar"] = {}
    every: dict[int, list[dict]] = {}  # every test window of n chunks, by n
    for m in SERVED_METERS:
        n = int(16 // bars_per_chunk(m))
        every.setdefault(n, real_windows(chunked, split["test"], n, 10**9, seed=2))
        entry = per_meter(composer, [r for r in every[n] if tuple(r["meter"]) == m], served, bias, args.seed)
        report["per_meter_16bar"][f"{m[0]}/{m[1]}"] = entry
        print("meter", f"{m[0]}/{m[1]}", json.dumps(entry), flush=True)

    # 4. reconstruction through the chunk path
    composer.bf16_decode = False  # reconstruction accuracy in fp32, as the VAE's own figures
    report["reconstruction"] = reconstruction(composer, melodies, split["test"], limit=args.recon_limit)
    print("reconstruction", report["reconstruction"], flush=True)
    report["seconds"] = time.time() - t0

    png = Path(args.out).with_suffix(".png")
    rows_r, rows_f, meta = [], [], []
    for n in (8, 16):
        real_n, toks_n = examples[n]
        for i in np.random.default_rng(5).choice(len(real_n), 3, replace=False):
            rows_r.append(real_n[i])
            rows_f.append(toks_n[i])
            meta.append(real_n[i])
    plot_rolls(
        rows_r, rows_f, meta, png, f"held-out tunes (left) vs prior samples with the same meter (right), T={served:g}"
    )
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.6, 0.8, 1.0])
    p.add_argument("--copy-biases", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--top-ps", type=float, nargs="+", default=[1.0], help="codebook priors: nucleus sizes tried")
    p.add_argument(
        "--bf16-decode",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode samples under bf16 autocast (twice as fast; reconstruction is always fp32)",
    )
    p.add_argument("--valid-samples", type=int, default=300)
    p.add_argument("--selection-seeds", type=int, default=3, help="draws per setting on the validation split")
    p.add_argument("--recon-limit", type=int, default=400)
    p.add_argument("--baseline-minutes", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--write-served", action="store_true", help="store the chosen settings in the prior's metrics (what is served)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    args = p.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    report = evaluate(args)
    Path(args.out).write_text(json.dumps(report, indent=2, default=float))
    if args.write_served:
        served = {k: report[k] for k in ("served_temperature", "served_copy_bias", "served_top_p")}
        set_prior_metrics(args.prior, served)
        print(f"{args.prior}: metrics now hold {served}")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")
    return report


if __name__ == "__main__":
    main()
