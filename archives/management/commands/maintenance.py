"""manage.py maintenance [--archive UUID] [--dry-run] — run retention, prune, compaction and
aggregation now, as beat does (docs/maintenance.md); with --dry-run, print what would go and the
space it frees."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from archives.maintenance import archive_maintain
from archives.models import Archive


class Command(BaseCommand):
    help = "Run archive maintenance (retention, prune, compaction, aggregation) now."

    def add_arguments(self, parser):
        parser.add_argument("--archive", metavar="UUID", help="only this archive (default: every archive)")
        parser.add_argument("--dry-run", action="store_true", help="change nothing; print what would go")

    def handle(self, *args, **options):
        archives = Archive.objects.select_related("device").order_by("pk")
        if options["archive"]:
            try:
                archives = list(archives.filter(uuid=options["archive"]))
            except ValidationError:
                archives = []
            if not archives:
                raise CommandError(f"no archive {options['archive']!r}")
        failed = 0
        for archive in archives:
            self.stdout.write(f"archive {archive.uuid} ({archive.device.name}){' [dry run]' if options['dry_run'] else ''}")
            try:
                report = archive_maintain(archive=archive, dry_run=options["dry_run"])
            except Exception as error:  # recorded on the run row; go on with the other archives
                failed += 1
                self.stderr.write(f"  failed: {type(error).__name__}: {error}")
                continue
            for line in report.lines:
                self.stdout.write(f"  {line}")
        if failed:
            raise CommandError(f"{failed} archive(s) failed; see the maintenance runs")
