"""Train the melody VAE, then register the result as a model version (active unless --no-activate).

python manage.py train_model --config mel_16bar --data /tmp/corpus_midi --out var/runs/mel_16bar
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from generation import services


class Command(BaseCommand):
    help = "Train a MusicVAE config on a folder of MIDI files and register it as a model version."

    def add_arguments(self, parser):
        from generation.vae.train import build_arg_parser

        build_arg_parser(parser)
        parser.add_argument("--name", default=None, help="version name (default: the config name)")
        parser.add_argument("--no-activate", action="store_true", help="register without activating")

    def handle(self, *args, **opts):
        import argparse

        from generation.vae.train import train_from_args

        cfg, report = train_from_args(argparse.Namespace(**opts))
        metrics = {
            "valid": report["valid"],
            "train_minutes": report["train_minutes"],
            "steps": report["steps"],
            "train_windows_per_s": report["train_windows_per_s"],
        }
        version = services.model_version_register(
            name=opts["name"] or cfg.name,
            checkpoint_path=str(Path(opts["out"]) / "model.pt"),
            config=cfg.to_dict(),
            metrics=metrics,
            activate=not opts["no_activate"],
        )
        self.stdout.write(self.style.SUCCESS(f"registered {version}"))
