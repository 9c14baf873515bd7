"""python manage.py prune_orphan_files: remove files no track refers to (left by a killed worker)."""

from django.core.management.base import BaseCommand

from catalog import services


class Command(BaseCommand):
    help = "Delete media files that no track or rendered-media row refers to (older than --older-than minutes)."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, default=60, help="Minutes (default 60).")
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed.")

    def handle(self, *args, older_than=60, dry_run=False, **options):
        removed = services.media_prune_orphans(older_than_seconds=older_than * 60, dry_run=dry_run)
        for name in removed:
            self.stdout.write(f"{'would remove' if dry_run else 'removed'} {name}")
        self.stdout.write(f"{len(removed)} orphan files {'found' if dry_run else 'removed'}.")
