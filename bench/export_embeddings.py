"""Export the active model version's track embeddings as an .npz for bench/index_bench.py.

Not part of the test suite. Reads the database with Django set up (REFRAIN_VAR_DIR / DATABASE_URL
pick which one), so run it after `import_corpus`, `register_default_model` and `embed_catalog`:

    export REFRAIN_VAR_DIR=/tmp/benchvar
    python bench/export_embeddings.py --out /tmp/benchvar/embeddings.npz

Writes `mu` (N x z: the stored TrackEmbedding vectors, i.e. the mean of each tune's window posterior
means), `sigma` (N x z), `track_ids` (N) and `window_count` (N).

`sigma` is, by default (`--sigma per-dim`), the real per-dimension posterior sigma: every tune's
windows are encoded again with MelodyVAE.encode, exactly as recommend.services.track_embed_batch cuts
them, and the window sigmas are averaged per dimension (the same pooling that gives the stored
`sigma_mean`, which is their mean over dimensions too; the script checks the two agree). A tune
whose melody cannot be read again keeps its stored sigma_mean broadcast over all dimensions.
`--sigma mean` skips the re-encoding and broadcasts the stored sigma_mean for every tune.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sigma", choices=["per-dim", "mean"], default="per-dim")
    parser.add_argument("--batch", type=int, default=256, help="tracks read and windows encoded per step")
    args = parser.parse_args()

    import django

    django.setup()
    import numpy as np
    from django.conf import settings

    from catalog.models import Track
    from generation.selectors import model_version_active
    from recommend.models import TrackEmbedding, vector_from_bytes

    version = model_version_active()
    if version is None:
        raise SystemExit("No model version is active (manage.py register_default_model).")
    rows = list(
        TrackEmbedding.objects.filter(model_version=version)
        .order_by("track_id")
        .values_list("track_id", "vector", "sigma_mean", "window_count")
    )
    if not rows:
        raise SystemExit(f"Model version {version.pk} has no embeddings (manage.py embed_catalog).")
    track_ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    mu = np.stack([vector_from_bytes(r[1]) for r in rows]).astype(np.float32)
    sigma_mean = np.asarray([r[2] for r in rows], dtype=np.float32)
    window_count = np.asarray([r[3] for r in rows], dtype=np.int32)
    sigma = np.repeat(sigma_mean[:, None], mu.shape[1], axis=1)  # the fallback, replaced below
    how = "stored sigma_mean broadcast over all dimensions"

    if args.sigma == "per-dim":
        import torch

        from generation import runtime
        from generation.vae.representation import MelodyError, extract_melody
        from recommend.services import melody_windows

        started = time.perf_counter()
        vae = runtime.vae_for(version)
        position = {int(t): i for i, t in enumerate(track_ids.tolist())}
        replaced = 0
        paths = dict(Track.objects.filter(pk__in=position).values_list("pk", "midi_file"))
        storage = Track._meta.get_field("midi_file").storage
        todo = sorted(paths)
        for start in range(0, len(todo), args.batch):
            owners, windows = [], []
            for track_id in todo[start : start + args.batch]:
                try:
                    with storage.open(paths[track_id], "rb") as handle:
                        melody = extract_melody(handle.read())
                except (MelodyError, OSError):
                    continue
                for tokens in melody_windows(melody, vae.seq_len, settings.REFRAIN_EMBED_MAX_WINDOWS):
                    owners.append(track_id)
                    windows.append(tokens)
            if not windows:
                continue
            sigmas = []
            with torch.no_grad():
                for i in range(0, len(windows), args.batch):
                    sigmas.append(vae.encode(windows[i : i + args.batch])[1].float().cpu().numpy())
            sigma_windows = np.concatenate(sigmas)
            owner_array = np.asarray(owners)
            for track_id in dict.fromkeys(owners):
                sigma[position[track_id]] = sigma_windows[owner_array == track_id].mean(axis=0)
                replaced += 1
            print(f"  {min(start + args.batch, len(todo))}/{len(todo)} tracks", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        drift = float(np.max(np.abs(sigma.mean(axis=1) - sigma_mean)))
        how = (
            f"real per-dimension posterior sigma (MelodyVAE.encode of each tune's windows, averaged per "
            f"dimension) for {replaced} of {len(track_ids)} tunes, the rest stored sigma_mean broadcast; "
            f"max |mean over dims - stored sigma_mean| = {drift:.2e}; re-encoding took "
            f"{time.perf_counter() - started:.0f} s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        mu=mu,
        sigma=sigma.astype(np.float32),
        track_ids=track_ids,
        window_count=window_count,
        model_version=np.asarray(version.pk),
        sigma_source=np.asarray(how),
    )
    norms = np.linalg.norm(mu, axis=1)
    print(
        f"wrote {args.out}: {mu.shape[0]} tunes x {mu.shape[1]} dims of model version {version.pk} "
        f"({version.checkpoint_path}); |mu| median {np.median(norms):.3f}; sigma median {np.median(sigma):.4f}; "
        f"sigma: {how}"
    )


if __name__ == "__main__":
    main()
