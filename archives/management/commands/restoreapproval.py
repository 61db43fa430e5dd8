"""manage.py restoreapproval --org NAME [on|off] — whether a second administrator must approve a
web restore of another user's files; without on/off, print the current setting."""
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from archives.restore_approval import restore_approval_required, restore_approval_set


class Command(BaseCommand):
    help = "Require (on) or stop requiring (off) a second administrator's approval for restores of another user's files."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="the organization's name")
        parser.add_argument("state", nargs="?", choices=["on", "off"])

    def handle(self, *args, org: str, state: str | None, **options):
        organization = Organization.objects.filter(name=org).first()
        if organization is None:
            raise CommandError(f"no organization named {org!r}")
        if state is not None:
            restore_approval_set(organization=organization, required=state == "on", actor=None,
                                 actor_label="manage.py restoreapproval")
        required = restore_approval_required(organization.pk)
        self.stdout.write(f"{organization.name}: restores of another user's files "
                          f"{'need a second administrator' if required else 'need no approval'}")
