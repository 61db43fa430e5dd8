"""manage.py createorg NAME --admin EMAIL — idempotent."""
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.management.commands._passwords import password_from_env_or_prompt
from accounts.models import Role, User
from accounts.services import organization_get_or_create, user_ensure


class Command(BaseCommand):
    help = "Create an organization and its first administrator (does nothing for what exists)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--admin", required=True, metavar="EMAIL", help="email of the org administrator")

    def handle(self, *args, name: str, admin: str, **options):
        existing_user = User.objects.filter(email__iexact=admin.strip()).exists()
        password = None if existing_user else password_from_env_or_prompt(admin)
        try:
            with transaction.atomic():
                org, org_created = organization_get_or_create(name=name)
                ensured = user_ensure(organization=org, email=admin, role=Role.ORG_ADMIN, password=password)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"organization {org.name!r} ({org.slug}, {org.uuid}): {'created' if org_created else 'exists'}")
        self.stdout.write(f"administrator {ensured.user.email}: {'created' if ensured.created else 'exists, unchanged'}")
