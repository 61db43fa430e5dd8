"""manage.py verifydomain --org NAME [--add DOMAIN]... [--remove DOMAIN]... — an operator records
which email domains an organization has proved it owns (SSO routing, SCIM provisioning)."""
from django.core.management.base import BaseCommand, CommandError

from accounts.domains import DomainRefused, verified_domains_change
from accounts.models import Organization


class Command(BaseCommand):
    help = "Add or remove an organization's verified email domains and print them."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        parser.add_argument("--add", action="append", default=[], metavar="DOMAIN")
        parser.add_argument("--remove", action="append", default=[], metavar="DOMAIN")

    def handle(self, *args, org: str, add: list[str], remove: list[str], **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}")
        try:
            domains = verified_domains_change(organization=organization, add=add, remove=remove,
                                              actor_label="manage.py verifydomain")
        except DomainRefused as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write("\n".join(domains) if domains else f"{organization.name} has no verified domains")
