"""manage.py orgsettings --org NAME [--require-admin-mfa on|off] — show or change an organization's settings."""
from django.core.management.base import BaseCommand, CommandError

from accounts.mfa import org_require_admin_mfa_set
from accounts.models import Organization

_SWITCH = {"on": True, "off": False}


class Command(BaseCommand):
    help = ("Show an organization's settings, or change them: --require-admin-mfa on|off makes its "
            "administrators use an authenticator app for password sign-ins (as the console's account page).")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        parser.add_argument("--require-admin-mfa", choices=sorted(_SWITCH), dest="require_admin_mfa",
                            help="require two-factor authentication for administrators")

    def handle(self, *args, org: str, require_admin_mfa: str | None, **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}")
        if require_admin_mfa is not None:
            organization = org_require_admin_mfa_set(organization=organization, required=_SWITCH[require_admin_mfa],
                                                     actor=None, actor_label="manage.py orgsettings")
        self.stdout.write(f"{organization.name}: require-admin-mfa "
                          f"{'on' if organization.require_admin_mfa else 'off'}")
