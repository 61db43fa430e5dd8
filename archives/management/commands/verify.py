"""manage.py verify [--archive UUID] [--deep] [--sample SHARE]

Shallow (default, keyless): every pack frame the index names is read and checked. Deep: also
fetches the user's key (audited, purpose archive_maintenance), decrypts every block of the latest
versions and names damaged files. Exit status 0 when clean, 1 when damage was found (it is then
also raised as an alert, and the device's next backup heals it), 2 when a check could not run.
"""
import sys

from django.core.management.base import BaseCommand

from archives.healing import heal_path_ids
from archives.management.commands._safeguards import archive_by_uuid
from archives.models import Archive, ArchiveCheck
from archives.verify import archive_verify_deep, archive_verify_shallow


class Command(BaseCommand):
    help = "Verify archives (shallow keyless check; --deep decrypts the latest versions). Exit 1 on damage."

    def add_arguments(self, parser):
        parser.add_argument("--archive", metavar="UUID", help="one archive (default: every archive)")
        parser.add_argument("--deep", action="store_true", help="decrypt every block of the latest versions")
        parser.add_argument("--sample", type=float, metavar="SHARE", help="shallow: check only this share of packs")

    def handle(self, *args, archive, deep, sample, **options):
        archives = [archive_by_uuid(archive)] if archive else list(
            Archive.objects.filter(removal__isnull=True).select_related("organization", "user", "device"))
        worst = 0
        for target in archives:
            if deep:
                result = archive_verify_deep(archive=target, actor=None, actor_label="manage.py verify --deep")
            else:
                result = archive_verify_shallow(archive=target, sample=sample)
            check = result.check
            line = (f"{target.uuid} ({target.device.name}): {check.get_outcome_display().lower()} — "
                    f"{check.packs_checked} packs, {check.frames_checked} frames"
                    + (f", {check.files_checked} files" if deep else ""))
            self.stdout.write(line)
            if check.outcome == ArchiveCheck.Outcome.DAMAGED:
                worst = max(worst, 1)
                report = result.report
                self.stdout.write(f"  {report.blocks} damaged block(s); {len(report.versions)} version(s), "
                                  f"{len(report.path_ids)} path id(s) affected")
                for name in report.files[:50]:
                    self.stdout.write(f"  file: {name}")
                for path_id in ([] if report.files else report.path_ids[:50]):
                    self.stdout.write(f"  path id: {path_id}")
            elif check.outcome == ArchiveCheck.Outcome.FAILED:
                worst = 2
                self.stderr.write(f"  could not run: {check.detail.get('error', '')}")
            waiting = len(heal_path_ids(target))
            if waiting and check.outcome != ArchiveCheck.Outcome.FAILED:
                worst = max(worst, 1)  # damage found earlier is not repaired yet
                self.stdout.write(f"  {waiting} path(s) await healing by the device's next backup")
        sys.exit(worst)
