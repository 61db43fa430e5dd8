"""manage.py legalhold --org NAME [--user EMAIL [--release] [--reason TEXT]]

Place a user on legal hold (none of their archives loses a version or a block), release one, or
list the organization's active holds. Audited, with the system as the actor."""
from django.core.management.base import BaseCommand

from archives.holds import legal_hold_place, legal_hold_release
from archives.management.commands._safeguards import organization_named, user_of
from archives.models import LegalHold

LABEL = "manage.py legalhold"


class Command(BaseCommand):
    help = "Place a user on legal hold, release the hold (--release), or list the active holds."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME")
        parser.add_argument("--user", metavar="EMAIL")
        parser.add_argument("--release", action="store_true")
        parser.add_argument("--reason", default="")

    def handle(self, *args, org, user, release, reason, **options):
        organization = organization_named(org)
        if user:
            target = user_of(organization, user)
            if release:
                hold = legal_hold_release(user=target, actor=None, actor_label=LABEL)
                self.stdout.write(f"{target.email}: hold released" if hold else f"{target.email}: was not on hold")
            else:
                hold = legal_hold_place(user=target, actor=None, actor_label=LABEL, reason=reason)
                self.stdout.write(f"{target.email}: on legal hold since {hold.placed_at.isoformat()}")
            return
        for hold in LegalHold.objects.filter(organization=organization, released_at__isnull=True).select_related("user"):
            self.stdout.write(f"{hold.user.email}\t{hold.placed_at.isoformat()}\t{hold.placed_by_label}\t{hold.reason}")
