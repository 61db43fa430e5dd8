"""manage.py scimtoken --org NAME [--label TEXT] — print a new SCIM bearer token for the org."""
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from accounts.services import scim_token_issue


class Command(BaseCommand):
    help = "Create a SCIM bearer token for an organization and print it (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        parser.add_argument("--label", default="", help="what the token is for, e.g. the IdP's name")

    def handle(self, *args, org: str, label: str, **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}")
        self.stdout.write(scim_token_issue(organization=organization, label=label, actor_label="manage.py scimtoken"))
