"""manage.py train_recommender: refit the collaborative model and learn the feed's ranker now (the
beat tasks do both on a schedule), and print the learned blend."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from recommend.model_services import collaborative_refit, ranker_train


class Command(BaseCommand):
    help = "Refit ALS and popularity on every rating, learn the feed's ranker, and print its weights."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--collaborative-only", action="store_true", help="Refit ALS and popularity only.")

    def handle(self, *args, seed: int, collaborative_only: bool, **options):
        if collaborative_only:
            row = collaborative_refit(seed=seed)
            self.stdout.write(
                f"collaborative model {row.pk}: {row.users} listeners, {row.ratings} ratings, {row.seconds} s"
            )
            return
        trained = ranker_train(seed=seed)
        if trained is None:
            raise CommandError("No index serves yet (manage.py embed_catalog): the ranker needs the latent space.")
        row, ranker = trained
        self.stdout.write(
            f"ranker {row.pk} ({'default weights: ' + ranker.metrics.get('reason', '') if ranker.metrics.get('default') else 'learned'})"
        )
        self.stdout.write("weights per feature (in its own units; logistic regression on standardised features):")
        for name, weight in ranker.raw_weights().items():
            self.stdout.write(f"  {name:<22} {weight:+.4f}")
        metrics = {k: v for k, v in ranker.metrics.items() if k != "tried"}
        self.stdout.write("metrics: " + json.dumps(metrics))
