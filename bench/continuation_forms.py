"""How continuations repeat: held-out prompts continued with forms (the served way) and by the pointer.

    python bench/continuation_forms.py --latents runs/latents_keyC.pt --split runs/split.json \
        --out bench/results/continuation_forms.json

For the first --tunes validation tunes of 8 chunks or more: their first 4 chunks (from the latent
cache, as `encode` gives them) are continued to 8 ("ends" as the real tune: whether it has exactly 8
chunks), once taking a training tune's form that begins as the prompt does (`continue_from` with
`use_forms`) and once leaving repeats to the pointer. Reported beside the real chunks 4-7: the share
of them that repeat an earlier chunk bit for bit, and how many repeats there are at each distance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generation.vae.longform import DEFAULT_PRIOR, LatentTune, LongformComposer  # noqa: E402
from generation.vae.prior import METERS  # noqa: E402
from generation.vae.prior_train import latent_set  # noqa: E402

PROMPT, TOTAL = 4, 8


def repeats(z: torch.Tensor) -> tuple[float, list[int]]:
    """(share of chunks PROMPT.. that repeat an earlier chunk, the distance of each repeat)."""
    form = LongformComposer.repeat_structure(z)[PROMPT:]
    return float(np.mean([j >= 0 for j in form])), [PROMPT + k - j for k, j in enumerate(form) if j >= 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latents", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--prior", default=str(DEFAULT_PRIOR))
    p.add_argument("--tunes", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "continuation_forms.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    composer = LongformComposer.load(args.prior)
    cache = torch.load(args.latents, weights_only=True)
    valid = latent_set(cache, set(json.loads(Path(args.split).read_text())["valid"]), originals_only=True)
    rows = [i for i in range(len(valid.lengths)) if valid.lengths[i] >= TOTAL][: args.tunes]
    shares: dict[str, list[float]] = {"real": [], "forms": [], "pointer": []}
    distances: dict[str, list[int]] = {k: [] for k in shares}
    for i in tqdm(rows, desc="continue"):
        s = int(valid.starts[i])
        z, ties = valid.z[s : s + TOTAL].float(), valid.ties[s : s + TOTAL]
        meter = METERS[valid.meters[i]] if valid.meters[i] < len(METERS) else (4, 4)
        found = {"real": z}
        prompt = LatentTune(z[:PROMPT], ties[:PROMPT], meter, torch.full((PROMPT,), -2), 0)
        for name, use in (("forms", True), ("pointer", False)):
            composer.use_forms = use
            found[name] = composer.continue_from(prompt, TOTAL, seed=i, ends=bool(valid.lengths[i] == TOTAL)).z
        for name, zz in found.items():
            share, dist = repeats(zz)
            shares[name].append(share)
            distances[name] += dist
    report = {
        "prior": args.prior,
        "prompts": len(rows),
        "repeat_share_of_new_chunks": {k: float(np.mean(v)) for k, v in shares.items()},
        "repeats_at_distance_1_to_7": {k: np.bincount(v, minlength=TOTAL)[1:].tolist() for k, v in distances.items()},
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
