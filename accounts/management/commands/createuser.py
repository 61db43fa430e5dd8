"""manage.py createuser --org NAME EMAIL --role ROLE — idempotent."""
from django.core.management.base import BaseCommand, CommandError

from accounts.management.commands._passwords import password_from_env_or_prompt
from accounts.models import Organization, Role, User
from accounts.services import user_ensure


class Command(BaseCommand):
    help = "Create a user in an organization (does nothing if the user exists there)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        parser.add_argument("--role", default=Role.USER, choices=Role.values)

    def handle(self, *args, email: str, org: str, role: str, **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}; create it with: manage.py createorg {org!r} --admin EMAIL")
        existing = User.objects.filter(email__iexact=email.strip()).exists()
        password = None if existing else password_from_env_or_prompt(email)
        try:
            ensured = user_ensure(organization=organization, email=email, role=role, password=password)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if ensured.created:
            self.stdout.write(f"user {ensured.user.email} ({role}) created in {organization.name!r}")
        else:
            self.stdout.write(f"user {ensured.user.email} exists in {organization.name!r}, unchanged (role {ensured.user.role})")
