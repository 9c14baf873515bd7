"""How well does the latent space group tunes the way people do? Same-label retrieval precision@k.

For a sample of embedded catalog tracks, each track's k nearest other tracks (cosine) are looked up
under three representations, and precision@k is the share of them with the same label (collection
by default, or region):

    latent       the active model version's stored embeddings (what similar tracks and feeds use)
    pitch_class  a 12-bin, duration-weighted pitch-class histogram of the MIDI (a content baseline
                 that needs no model)
    random       random unit vectors: equals the chance level, the floor

Exact brute-force kNN in numpy, so the numbers measure the representation, not an index.

Then (logic in recommend.evaluation, which says what the simulation assumes): simulated users whose
affinity mixes their taste over the catalog's real labels, a per-track appeal everyone shares and
noise rate the tracks they are exposed to; the served feed (recommend.ranking.rank_feed, what the
API calls, with a collaborative model and ranker learned from the simulated log) against
popularity, item-kNN, ALS and content + popularity: precision@k against the true top-k,
random-exposure and held-out NDCG@k, coverage, novelty, paired bootstrap intervals of the served
feed minus each baseline, and the cold start; one block per --mixes x --ratings-per-user cell.
And the generated feed: melodies made near a user's taste vs near another user's.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from catalog.models import Rating, Track, User
from generation import runtime
from generation.selectors import model_version_active
from recommend import evaluation
from recommend.feeds import feed_recommended
from recommend.selectors import embedding_matrix


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean over tracks of the share of their k nearest others (cosine) that share their label."""
    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    hits = 0.0
    for start in range(0, len(x), 1024):  # blocks keep the similarity matrix small
        sims = x[start : start + 1024] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # never count the track itself
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        hits += float((labels[top] == labels[start + rows, None]).mean(axis=1).sum())
    return hits / len(x)


def chance_precision(labels: np.ndarray) -> float:
    """Expected precision of a random ranking: P(another track shares the label)."""
    _, counts = np.unique(labels, return_counts=True)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def pitch_class_histogram(midi_bytes: bytes) -> np.ndarray:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes))
    return pm.get_pitch_class_histogram(use_duration=True, normalize=True).astype(np.float32)


def simulated_feed_precision(*, label: str, users_per_label: int, k: int, seed: int) -> dict:
    """Feed check with simulated users: each likes (5) five random tunes of one label value and
    dislikes (1) two of other values; precision@k is the share of their recommended feed's top k
    with the liked value. Users and ratings are rolled back afterwards."""
    catalog = dict(Track.objects.filter(is_generated=False).exclude(**{label: ""}).values_list("pk", label))
    by_value: dict[str, list[int]] = {}
    for track_id, value in catalog.items():
        by_value.setdefault(value, []).append(track_id)
    values = sorted(v for v, members in by_value.items() if len(members) >= 5 + k)
    rng = np.random.default_rng(seed)
    precisions, chances = [], []
    with transaction.atomic():
        for value in values:
            others = [t for v in values if v != value for t in by_value[v]]
            for n in range(users_per_label):
                user = User.objects.create(username=f"evaluate-recommender-{value}-{n}"[:150])
                liked = rng.choice(by_value[value], 5, replace=False).tolist()
                disliked = rng.choice(others, 2, replace=False).tolist() if len(others) >= 2 else []
                Rating.objects.bulk_create(
                    [Rating(user=user, track_id=t, score=5) for t in liked]
                    + [Rating(user=user, track_id=t, score=1) for t in disliked]
                )
                feed = feed_recommended(user=user, size=k)
                if feed:
                    precisions.append(np.mean([catalog.get(item.track_id) == value for item in feed]))
                    chances.append(len(by_value[value]) / len(catalog))
        transaction.set_rollback(True)
    return {
        "users": len(precisions),
        "precision_at_k": round(float(np.mean(precisions)), 4) if precisions else 0.0,
        "chance": round(float(np.mean(chances)), 4) if chances else 0.0,
    }


class Command(BaseCommand):
    help = "Precision@k of same-label retrieval: latent embeddings vs pitch-class histograms vs random."

    def add_arguments(self, parser):
        parser.add_argument("--label", choices=["collection", "region"], default="collection")
        parser.add_argument("--per-label", type=int, default=300, help="Tracks sampled per label value, at most.")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--users", type=int, default=5, help="Simulated users per label value for the feed check (0: skip it)."
        )
        parser.add_argument("--json", type=Path, dest="json_path", help="Also write the results here.")
        parser.add_argument(
            "--sim-users",
            type=int,
            default=500,
            help="Simulated users for the ranking evaluation (0: skip it and the generated feed).",
        )
        parser.add_argument(
            "--ratings-per-user",
            default="10,40",
            help="Mean ratings per simulated user; a comma list gives one evaluation per value.",
        )
        parser.add_argument(
            "--mixes",
            default="0.7,0.2,0.1;0.45,0.45,0.1;0.2,0.7,0.1",
            help="Semicolon list of content,appeal,noise weights of the simulated affinity: one grid row each.",
        )
        parser.add_argument("--gen-users", type=int, default=50, help="Users for the generated-feed check (0: skip).")
        parser.add_argument("--gen-per-user", type=int, default=4, help="Melodies generated per user.")
        parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the intervals.")

    def handle(
        self,
        *args,
        label: str,
        per_label: int,
        k: int,
        seed: int,
        users: int,
        json_path: Path | None,
        sim_users: int = 500,
        ratings_per_user: str = "10,40",
        mixes: str = "0.7,0.2,0.1;0.45,0.45,0.1;0.2,0.7,0.1",
        gen_users: int = 50,
        gen_per_user: int = 4,
        bootstrap: int = 1000,
        **opts,
    ):
        started = time.perf_counter()
        version = model_version_active()
        if version is None:
            raise CommandError("No model version is active.")
        if k <= 0 or per_label <= 1:
            raise CommandError("--k must be positive and --per-label at least 2.")
        ids, vectors = embedding_matrix(model_version=version)
        if not len(ids):
            raise CommandError("No track has an embedding for the active version (manage.py embed_catalog).")
        by_id = dict(zip(ids.tolist(), range(len(ids))))
        rows = (
            Track.objects.filter(pk__in=list(by_id), is_generated=False)
            .exclude(**{label: ""})
            .order_by("pk")
            .values_list("pk", label)
        )
        groups: dict[str, list[int]] = {}
        for track_id, value in rows:
            groups.setdefault(value, []).append(track_id)
        rng = np.random.default_rng(seed)
        chosen: list[int] = []
        for value in sorted(groups):
            members = groups[value]
            if len(members) > per_label:
                members = sorted(rng.choice(members, per_label, replace=False).tolist())
            chosen.extend(members)
        labels_by_id = dict(rows)
        labels = np.asarray([labels_by_id[t] for t in chosen])
        if len(set(labels.tolist())) < 2 or len(chosen) <= k:
            raise CommandError(f"Need at least two {label} values and more than k={k} embedded tracks.")

        histograms: dict[int, np.ndarray] = {}
        for track in Track.objects.filter(pk__in=chosen).only("pk", "midi_file"):
            try:
                with track.midi_file.open("rb") as handle:
                    histograms[track.pk] = pitch_class_histogram(handle.read())
            except Exception:  # noqa: BLE001 - an unreadable file drops out of every representation
                continue
        keep = np.asarray([t in histograms for t in chosen])
        chosen, labels = [t for t in chosen if t in histograms], labels[keep]
        latent = vectors[[by_id[t] for t in chosen]]
        pitch = np.stack([histograms[t] for t in chosen])
        random_vectors = rng.standard_normal((len(chosen), latent.shape[1])).astype(np.float32)

        results = {
            "model_version": version.pk,
            "model_name": version.name,
            "label": label,
            "k": k,
            "tracks": len(chosen),
            "per_label": {value: int((labels == value).sum()) for value in sorted(set(labels.tolist()))},
            "chance": round(chance_precision(labels), 4),
            "precision_at_k": {
                "latent": round(precision_at_k(latent, labels, k), 4),
                "pitch_class": round(precision_at_k(pitch, labels, k), 4),
                "random": round(precision_at_k(random_vectors, labels, k), 4),
            },
        }
        if users > 0:
            results["feed"] = simulated_feed_precision(label=label, users_per_label=users, k=k, seed=seed)
        if sim_users > 0:
            try:
                regimes = [float(v) for v in str(ratings_per_user).split(",") if v.strip()]
                grid = [tuple(float(w) for w in mix.split(",")) for mix in str(mixes).split(";") if mix.strip()]
            except ValueError as exc:
                raise CommandError(
                    "--ratings-per-user takes numbers, e.g. 10,40; --mixes e.g. 0.7,0.2,0.1;0.2,0.7,0.1."
                ) from exc
            if any(len(mix) != 3 for mix in grid):
                raise CommandError("Each of --mixes is three weights: content,appeal,noise.")
            results["simulated_users"] = self._simulated(
                version=version,
                ids=ids,
                vectors=vectors,
                k=k,
                seed=seed,
                users=sim_users,
                regimes=regimes,
                mixes=grid,
                gen_users=gen_users,
                gen_per_user=gen_per_user,
                bootstrap=bootstrap,
            )
        results["seconds"] = round(time.perf_counter() - started, 1)
        self.stdout.write(
            f"same-{label} precision@{k} over {len(chosen)} tracks "
            f"({len(results['per_label'])} {label}s, model version {version.pk} {version.name}):"
        )
        self.stdout.write(f"  {'representation':<14} precision@{k}")
        for name, value in results["precision_at_k"].items():
            self.stdout.write(f"  {name:<14} {value:.3f}")
        self.stdout.write(f"  {'chance':<14} {results['chance']:.3f}")
        if "feed" in results:
            feed = results["feed"]
            self.stdout.write(
                f"recommended feed of {feed['users']} simulated users (5 liked tunes of one {label}, "
                f"2 disliked of others): share of the top {k} from the liked {label}: "
                f"{feed['precision_at_k']:.3f} (that {label}'s share of the catalog: {feed['chance']:.3f})"
            )
        if "simulated_users" in results:
            self._print_simulated(results["simulated_users"], k)
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=2) + "\n")
            self.stdout.write(f"written to {json_path}")

    def _simulated(
        self, *, version, ids, vectors, k, seed, users, regimes, mixes, gen_users, gen_per_user, bootstrap
    ) -> dict:
        fields = ("pk", "region", "collection", "time_signature", "key", "tempo_bpm", "note_count", "duration_seconds")
        rows = {r[0]: r for r in Track.objects.filter(pk__in=ids.tolist(), is_generated=False).values_list(*fields)}
        keep = np.asarray([int(t) in rows for t in ids.tolist()], dtype=bool)
        ids, vectors = ids[keep], vectors[keep]
        if len(ids) <= k:
            raise CommandError(f"Need more than k={k} embedded catalog tracks for the simulated users.")
        columns = list(zip(*[rows[int(t)] for t in ids.tolist()]))
        facets = evaluation.catalog_facets(**{name: columns[i] for i, name in enumerate(fields) if i})
        out = {
            "assumptions": evaluation.__doc__.split("The simulation", 1)[1].split("Metrics:", 1)[0].strip(),
            "facet_values": {
                f: {str(v): int(c) for v, c in zip(*np.unique(facets[f].astype(str), return_counts=True))}
                for f in evaluation.FACETS
            },
            "regimes": {},
        }
        import faiss
        from threadpoolctl import threadpool_limits

        faiss.omp_set_num_threads(1)  # a listener's k-means is tiny: 60 ms with contending threads, 8 without
        first_sim = None
        for content, appeal, noise in mixes:
            for mean_ratings in regimes:
                config = evaluation.SimConfig(
                    users=users,
                    ratings_per_user=mean_ratings,
                    content_weight=content,
                    appeal_weight=appeal,
                    noise_weight=noise,
                    seed=seed,
                )
                name = f"{config.mix}, ~{mean_ratings:g} ratings"
                bar = tqdm(desc=name, unit="step")

                def step(label, bar=bar):
                    bar.set_postfix_str(label)
                    bar.update(1)

                with threadpool_limits(1):
                    data, sim = evaluation.run_simulation(
                        facets, vectors, ids, config, k=k, resamples=bootstrap, progress=step
                    )
                bar.close()
                out["regimes"][name] = data
                first_sim = first_sim or sim
        if gen_users > 0 and first_sim is not None:
            import torch  # only this part of the evaluation needs the model

            torch.set_num_threads(1)
            started = time.perf_counter()
            self.stderr.write(f"generated feed: {gen_users} users x {gen_per_user} melodies (CPU, 1 thread) ...")
            vae = runtime.vae_for(version)
            out["generated_feed"] = evaluation.generated_feed_quality(
                vae, first_sim, vectors, ids, users=gen_users, per_user=gen_per_user, seed=seed, resamples=bootstrap
            )
            out["generated_feed"]["regime"] = f"{regimes[0]:g}"
            out["generated_feed"]["seconds"] = round(time.perf_counter() - started, 1)
        return out

    def _print_simulated(self, sim: dict, k: int) -> None:
        def fmt(stat):
            return f"{stat['mean']:.3f} [{stat['ci95'][0]:.3f}, {stat['ci95'][1]:.3f}]"

        p_key, n_key = f"precision@{k}_true_top", f"random_exposure_ndcg@{k}"
        for name, regime in sim["regimes"].items():
            self.stdout.write(
                f"{name}: {regime['users']} users ({regime['train_ratings_per_user']} training ratings, "
                f"{regime['train_likes_per_user']} liked), {regime['items']} tracks; 95% bootstrap intervals:"
            )
            self.stdout.write(
                f"  {'method':<19} {p_key:<24} {n_key:<24} {'held-out ndcg@' + str(k):<24} coverage  novelty"
            )
            for method, m in regime["methods"].items():
                unbiased = m.get(n_key)
                self.stdout.write(
                    f"  {method:<19} {fmt(m[p_key]):<24} {fmt(unbiased) if unbiased else '-':<24} "
                    f"{fmt(m[f'ndcg@{k}']):<24} {m['coverage']:<9.3f} {m['novelty']['mean']:.2f}"
                )
            served = regime["methods"]["served"]
            for baseline in evaluation.BASELINES:
                versus = served[f"versus_{baseline}"]
                self.stdout.write(
                    f"  served minus {baseline:<18} "
                    + "; ".join(
                        f"{metric} {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] "
                        f"({100 * d['relative']:+.0f} %{', meets' if d['meets_target'] else ''})"
                        for metric, d in versus.items()
                    )
                )
            cold = regime["cold_start"]
            self.stdout.write(
                f"  cold start {p_key}: served {fmt(cold['served'])}, popularity {fmt(cold['popularity'])}"
            )
            self.stdout.write(
                "  learned blend (weight per feature unit): "
                + ", ".join(f"{f} {w:+.3f}" for f, w in served["ranker_weights"].items())
            )
        gen = sim.get("generated_feed")
        if gen and gen.get("users"):
            cos, aff = gen["cosine_to_heldout_likes"], gen["hidden_affinity_of_nearest_catalog_track"]
            self.stdout.write(f"generated feed ({gen['users']} users x {gen['melodies_per_user']} melodies):")
            self.stdout.write(
                f"  cosine to the user's held-out likes: own {fmt(cos['own'])}, "
                f"another user's {fmt(cos['other_user'])}, gap {fmt(cos['gap'])}"
            )
            cen = gen["centred_cosine_to_heldout_likes"]
            self.stdout.write(
                f"  the same, catalog mean removed:      own {fmt(cen['own'])}, "
                f"another user's {fmt(cen['other_user'])}, gap {fmt(cen['gap'])}"
            )
            self.stdout.write(
                f"  hidden affinity of the nearest catalog track: own {fmt(aff['own'])}, "
                f"another user's {fmt(aff['other_user'])}, gap {fmt(aff['gap'])} "
                f"(catalog average {fmt(aff['catalog_average'])})"
            )
