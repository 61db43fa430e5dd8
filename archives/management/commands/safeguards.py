"""manage.py safeguards --org NAME [--departed-days N] [--freeze-percent N] [--freeze-min-files N]

Show or change how long a departed (deactivated) user's archives are kept before they are removed
(default 90 days), and when a backup run freezes pruning (default: it changed or deleted at least
30 % and at least 100 of the archive's files)."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from archives.holds import safeguards_set
from archives.management.commands._safeguards import organization_named


class Command(BaseCommand):
    help = "Show or set departed-user retention and the mass-change (ransomware) freeze threshold."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME")
        parser.add_argument("--departed-days", type=int, dest="departed_retention_days")
        parser.add_argument("--freeze-percent", type=int, dest="freeze_share_percent")
        parser.add_argument("--freeze-min-files", type=int, dest="freeze_min_files")

    def handle(self, *args, org, departed_retention_days, freeze_share_percent, freeze_min_files, **options):
        organization = organization_named(org)
        try:
            row = safeguards_set(organization=organization, actor=None, actor_label="manage.py safeguards",
                                 departed_retention_days=departed_retention_days,
                                 freeze_share_percent=freeze_share_percent, freeze_min_files=freeze_min_files)
        except (ValueError, ValidationError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{organization.name}: departed users kept {row.departed_retention_days} days; pruning "
                          f"freezes when a run changes or deletes ≥ {row.freeze_share_percent} % and ≥ "
                          f"{row.freeze_min_files} files")
