"""manage.py restoredrill [--archive UUID] [--files N] — run restore drills now (as beat does daily)."""
import sys

from django.core.management.base import BaseCommand

from archives.drills import DRILL_FILES, restore_drill_run
from archives.management.commands._safeguards import archive_by_uuid
from archives.models import Archive, ArchiveCheck


class Command(BaseCommand):
    help = "Restore a random sample of files of each archive in memory and record 'restorable as of'. Exit 1 on failure."

    def add_arguments(self, parser):
        parser.add_argument("--archive", metavar="UUID")
        parser.add_argument("--files", type=int, default=DRILL_FILES)

    def handle(self, *args, archive, files, **options):
        archives = [archive_by_uuid(archive)] if archive else list(
            Archive.objects.filter(removal__isnull=True).select_related("organization", "user", "device"))
        failed = False
        for target in archives:
            check = restore_drill_run(archive=target, files=files)
            failed = failed or check.outcome == ArchiveCheck.Outcome.FAILED
            self.stdout.write(f"{target.uuid} ({target.device.name}): {check.outcome}, {check.files_checked} files"
                              + (f" — {check.detail.get('error')}" if check.outcome == ArchiveCheck.Outcome.FAILED else ""))
        sys.exit(1 if failed else 0)
