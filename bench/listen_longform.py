"""Listen and look: ten prior samples and ten continuations of held-out tunes, as MIDI, audio and piano rolls.

    python bench/listen_longform.py --data /tmp/corpus_midi --out var/listen

Writes, under --out: for each tune `sample_NN.{mid,ogg,png}` / `continue_NN.{mid,ogg,png}` (the
audio and the piano roll drawn by the same code as the platform's tracks), `contact_sheet.png` (all
twenty piano rolls; continuations show their prompt shaded) and `listen.json` (per tune: meter,
bars, notes, pitch span, longest note, share of notes in one scale, exact 2-bar repeat share, audio
seconds and loudness) and `register_drift` (over 60 held-out prompts: how far the continuation's
register moves from the prompt's, beside the real tune's own second half). Samples use the
checkpoint's served settings; the prompts are the first half (4 chunks) of held-out test tunes of the
content split, continued to 8 chunks.
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

from catalog.rendering.audio import render_audio  # noqa: E402
from catalog.rendering.pianoroll import render_pianoroll  # noqa: E402
from generation.vae.attributes import notes_of  # noqa: E402
from generation.vae.chunks import chunk_steps, melody_chunks  # noqa: E402
from generation.vae.data import DEFAULT_CACHE_DIR, load_melodies  # noqa: E402
from generation.vae.dedup import content_split  # noqa: E402
from generation.vae.longform import DEFAULT_PRIOR, LongformComposer  # noqa: E402
from generation.vae.metrics import scale_consistency  # noqa: E402
from generation.vae.prior_evaluate import draw_roll  # noqa: E402
from generation.vae.representation import steps_per_bar  # noqa: E402
from generation.vae.structure import longest_note, pitch_span, repeat_share  # noqa: E402
from theory.keys import estimate_key  # noqa: E402

SAMPLE_METERS = [(4, 4), (6, 8), (3, 4), (2, 4), (4, 4), (6, 8), (3, 4), (4, 4), (2, 4), (6, 8)]


def describe(tokens: np.ndarray, meter: tuple[int, int], steps: int) -> dict:
    bar = steps_per_bar(*meter)
    return {
        "meter": f"{meter[0]}/{meter[1]}",
        "bars": len(tokens) // bar,
        "notes": len(notes_of(tokens)),
        "pitch_span": pitch_span(tokens),
        "longest_note_bars": longest_note(tokens) / bar,
        "in_scale": scale_consistency(tokens),
        "repeat_share": repeat_share(tokens, steps),
        "key": estimate_key(pitch_class_durations(tokens)),
    }


def pitch_class_durations(tokens: np.ndarray) -> np.ndarray:
    hist = np.zeros(12)
    for _, d, p in notes_of(tokens):
        hist[p % 12] += d
    return hist


def register_drift(composer: LongformComposer, melodies: dict, names: list[str], seed: int) -> dict:
    """How far continuations move from their prompt's register: per held-out tune, the first 4 chunks
    as the prompt continued to 8; |mean chunk median pitch of chunks 5-8 - that of chunks 1-4|, for
    the continuation and for the tune's own chunks 5-8."""
    from generation.vae.representation import FIRST_NOTE

    def medians(windows: np.ndarray) -> np.ndarray:
        return np.array([np.median(w[w >= FIRST_NOTE]) if (w >= FIRST_NOTE).any() else np.nan for w in windows])

    gen, real = [], []
    for i, tune in enumerate(composer.encode([melodies[n] for n in names])):
        prompt = type(tune)(tune.z[:4], tune.ties[:4], tune.meter, shift=tune.shift)
        out = medians(composer.decode_chunks(composer.continue_from(prompt, n_total=8, seed=seed + i).z))
        own = medians(composer.decode_chunks(tune.z[:8]))
        gen.append(abs(np.nanmean(out[4:]) - np.nanmean(out[:4])))
        real.append(abs(np.nanmean(own[4:]) - np.nanmean(own[:4])))
    g, r = np.array(gen), np.array(real)
    return {
        "tunes": len(names),
        "mean_register_change_semitones": {"continuation": float(g.mean()), "real": float(r.mean())},
        "share_over_7_semitones": {"continuation": float((g > 7).mean()), "real": float((r > 7).mean())},
    }


def contact_sheet(rows: list[tuple[str, np.ndarray, dict, int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    half = (len(rows) + 1) // 2
    fig, axes = plt.subplots(half, 2, figsize=(15, 1.5 * half), squeeze=False)
    for i, (name, toks, info, prompt_steps) in enumerate(rows):
        ax = axes[i % half][i // half]
        if prompt_steps:
            ax.axvspan(0, prompt_steps, color="0.92", zorder=0)
        bar = steps_per_bar(*map(int, info["meter"].split("/")))
        draw_roll(ax, toks, bar, colour=lambda step, end=prompt_steps: "C0" if step < end else "C3")
        ax.set_title(f"{name}: {info['meter']}, {info['bars']} bars, repeat {info['repeat_share']:.2f}", fontsize=7)
    fig.suptitle("left: prior samples (served settings); right: continuations (grey: the held-out prompt)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", default=str(DEFAULT_PRIOR))
    p.add_argument("--data", required=True, help="the corpus export (or its melodies cache), for the prompts")
    p.add_argument("--out", default=str(ROOT / "var" / "listen"))
    p.add_argument("--soundfont", default="/usr/share/sounds/sf2/default-GM.sf2")
    p.add_argument("--no-audio", action="store_true", help="MIDI and piano rolls only")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    composer = LongformComposer.load(args.prior)

    jobs: list[tuple[str, np.ndarray, tuple[int, int], int]] = []
    for i, meter in enumerate(SAMPLE_METERS):
        tune = composer.sample(8 if i % 2 == 0 else 16, meter=meter, seed=args.seed + i)[0]
        jobs.append((f"sample_{i:02d}", composer.decode(tune)[0], meter, 0))
    melodies = load_melodies(args.data, DEFAULT_CACHE_DIR)
    split, _ = content_split(melodies)
    rng = np.random.default_rng(args.seed)
    names = [n for n in split["test"] if len(melody_chunks(melodies[n]).windows) >= 8]
    for i, name in enumerate(rng.choice(names, 10, replace=False)):
        prompt = composer.encode(melodies[name])[0]
        prompt = type(prompt)(prompt.z[:4], prompt.ties[:4], prompt.meter, shift=prompt.shift)
        longer = composer.continue_from(prompt, n_total=8, seed=args.seed + 100 + i)
        jobs.append((f"continue_{i:02d}", composer.decode(longer)[0], prompt.meter, 4 * prompt.steps))

    report: dict = {"prior": str(args.prior), "tunes": {}}
    rows = []
    for name, tokens, meter, prompt_steps in tqdm(jobs, desc="render"):
        steps = chunk_steps(meter)
        info = describe(tokens, meter, steps)
        midi = composer.to_midi_bytes(tokens, meter=meter)
        (out / f"{name}.mid").write_bytes(midi)
        (out / f"{name}.png").write_bytes(render_pianoroll(midi, title=name))
        if not args.no_audio:
            audio = render_audio(midi, soundfont=args.soundfont)
            (out / f"{name}.ogg").write_bytes(audio.data)
            info["audio_seconds"] = audio.duration_seconds
            info["loudness_lufs"] = audio.loudness_lufs
        if prompt_steps:
            info["prompt_bars"] = prompt_steps // steps_per_bar(*meter)
        report["tunes"][name] = info
        rows.append((name, tokens, info, prompt_steps))
    contact_sheet(rows, out / "contact_sheet.png")
    report["register_drift"] = register_drift(composer, melodies, names[:60], args.seed + 1000)
    print("register drift", report["register_drift"])
    report["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    (out / "listen.json").write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {len(jobs)} tunes, contact_sheet.png and listen.json to {out}")
    return report


if __name__ == "__main__":
    main()
