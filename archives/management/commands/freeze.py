"""manage.py freeze [--org NAME] | --archive UUID --release

List archives whose pruning is frozen by a mass change (with the last good point in time), or
release one after an administrator looked at it (audited; resolves its alert)."""
from django.core.management.base import BaseCommand, CommandError

from archives.freeze import prune_freeze_release
from archives.management.commands._safeguards import archive_by_uuid, organization_named
from archives.models import PruneFreeze


class Command(BaseCommand):
    help = "List pruning freezes (ransomware signal), or release one archive's with --archive UUID --release."

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="NAME")
        parser.add_argument("--archive", metavar="UUID")
        parser.add_argument("--release", action="store_true")

    def handle(self, *args, org, archive, release, **options):
        if release:
            if not archive:
                raise CommandError("--release needs --archive UUID")
            target = archive_by_uuid(archive)
            count = prune_freeze_release(archive=target, actor=None, actor_label="manage.py freeze")
            self.stdout.write(f"{target.uuid}: {count} freeze(s) released" if count else f"{target.uuid}: not frozen")
            return
        freezes = PruneFreeze.objects.filter(released_at__isnull=True).select_related("archive__device")
        if org:
            freezes = freezes.filter(archive__organization=organization_named(org))
        if archive:
            freezes = freezes.filter(archive=archive_by_uuid(archive))
        for freeze in freezes.order_by("frozen_at"):
            last_good = freeze.last_good_at.isoformat() if freeze.last_good_at else "-"
            self.stdout.write(f"{freeze.archive.uuid}\t{freeze.archive.device.name}\tfrozen {freeze.frozen_at.isoformat()}"
                              f"\tlast good {last_good}\t{freeze.reason}")
