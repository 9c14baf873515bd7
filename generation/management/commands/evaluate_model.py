"""Evaluate a checkpoint (default: the active model version) on the held-out test split.

python manage.py evaluate_model --data /tmp/corpus_midi --out var/eval.json [--checkpoint PATH] [--record]
"""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from generation import selectors


class Command(BaseCommand):
    help = "Reconstruction and sample-quality metrics of a model version against baselines."

    def add_arguments(self, parser):
        from generation.vae.evaluate import add_arguments

        add_arguments(parser)
        # The active version's checkpoint is the default here.
        for action in parser._actions:
            if action.dest == "checkpoint":
                action.required = False
                action.default = None
        parser.add_argument("--record", action="store_true", help="store the metrics on the active version")

    def handle(self, *args, **opts):
        from generation.vae.evaluate import run

        version = selectors.model_version_active()
        if opts["checkpoint"] is None:
            if version is None:
                raise CommandError("no active model version; pass --checkpoint or run register_default_model")
            opts["checkpoint"] = str(selectors.model_version_checkpoint_file(model_version=version))
        report = run(argparse.Namespace(**opts))
        if opts["record"] and version is not None:
            version.metrics = {
                **version.metrics,
                "test": report["reconstruction"],
                "samples": report["samples"]["vae_prior"],
            }
            version.save(update_fields=["metrics"])
            self.stdout.write(self.style.SUCCESS(f"recorded metrics on {version}"))
