"""manage.py bootstrap — first run of the embedded default: a first organization and administrator.

Does nothing when an organization already exists. The generated password is printed once and kept
in var/initial-admin-password (mode 0600) so a user who missed it can find it.
"""
import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import Organization, Role
from accounts.services import organization_get_or_create, user_ensure

FIRST_ADMIN_EMAIL = "admin@haven.local"


class Command(BaseCommand):
    help = "Create a first organization and administrator if there is none, and say how to log in."

    def handle(self, *args, **options):
        password_file = settings.DATA_DIR / "initial-admin-password"
        if Organization.objects.exclude(name="Operators").exists():
            if password_file.exists():
                self.stdout.write(f"Log in at http://127.0.0.1:8000 as {FIRST_ADMIN_EMAIL}; "
                                  f"the first password is in {password_file}")
            return
        password = os.environ.get("HAVEN_PASSWORD") or secrets.token_urlsafe(12)
        org, _ = organization_get_or_create(name="My Organization")
        ensured = user_ensure(organization=org, email=FIRST_ADMIN_EMAIL, role=Role.ORG_ADMIN, password=password)
        ensured.user.is_staff = True
        ensured.user.is_superuser = True
        ensured.user.save(update_fields=["is_staff", "is_superuser"])
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as handle:
            handle.write(password + "\n")
        self.stdout.write(self.style.SUCCESS(
            f"Created organization {org.name!r} and administrator {FIRST_ADMIN_EMAIL}.\n"
            f"Log in at http://127.0.0.1:8000 with password: {password}\n"
            f"(also saved in {password_file}; change it after logging in)"
        ))
