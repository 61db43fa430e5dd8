"""manage.py rebuild-index ARCHIVE — recreate an archive's index from its pack files alone."""
import uuid

from django.core.management.base import BaseCommand, CommandError

from archives.models import Archive
from archives.rebuild import archive_index_drop, archive_index_rebuild


class Command(BaseCommand):
    help = "Rebuild the block and version index of an archive (by UUID) from its packs."

    def add_arguments(self, parser):
        parser.add_argument("archive", help="archive UUID")
        parser.add_argument("--drop", action="store_true",
                            help="forget the archive's current index first (the pack files are never touched)")

    def handle(self, *args, archive: str, drop: bool, **options):
        found = Archive.objects.select_related("organization").filter(uuid=archive).first() if _is_uuid(archive) else None
        if found is None:
            raise CommandError(f"No archive {archive!r} (give the archive's UUID)")
        if drop:
            archive_index_drop(archive=found)
        result = archive_index_rebuild(archive=found)
        self.stdout.write(f"archive {found.uuid}: indexed {result.packs} pack(s), {result.blocks} block(s), "
                          f"{result.versions} version(s)")
        for key in result.restored_packs:
            self.stdout.write(f"restored from quarantine: {key}")
        for problem in result.skipped_packs:
            self.stderr.write(f"skipped {problem}")
        if result.skipped_packs:
            raise CommandError(f"{len(result.skipped_packs)} pack(s) could not be read; they were left untouched")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
