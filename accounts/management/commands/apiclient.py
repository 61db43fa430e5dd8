"""manage.py apiclient --org NAME --scopes SCOPE,... [--name TEXT] [--created-by EMAIL] — print a
new public-API key for the organization (shown only once)."""
from django.core.management.base import BaseCommand, CommandError

from accounts.api_clients import SCOPES, ApiClientInvalid, api_client_create
from accounts.models import Organization, User


class Command(BaseCommand):
    help = "Create a public API client for an organization and print its key (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        parser.add_argument("--scopes", required=True, metavar="SCOPE,...",
                            help=f"comma-separated, from: {', '.join(SCOPES)}")
        parser.add_argument("--name", default="", metavar="TEXT", help="what the client is for, e.g. the SOAR's name")
        parser.add_argument("--created-by", default="", metavar="EMAIL",
                            help="the organization's administrator the client acts for (needed for restores:write)")

    def handle(self, *args, org: str, scopes: str, name: str, created_by: str, **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}")
        creator = None
        if created_by:
            creator = User.objects.filter(email__iexact=created_by, organization=organization, is_active=True).first()
            if creator is None:
                raise CommandError(f"No active user {created_by!r} in {organization.name}")
        try:
            _, key = api_client_create(organization=organization, name=name, scopes=scopes, created_by=creator,
                                       actor_label="manage.py apiclient")
        except ApiClientInvalid as invalid:
            raise CommandError(str(invalid)) from None
        self.stdout.write(key)
