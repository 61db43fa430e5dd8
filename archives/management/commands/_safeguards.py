"""What the safeguard commands share: finding the organization, user and archive, reading sizes."""
import uuid

from django.core.management.base import CommandError

from accounts.models import Organization, User
from archives.models import Archive
from archives.quotas import size_parse as quota_size_parse


def organization_named(name: str) -> Organization:
    organization = Organization.objects.filter(name=name).first() or Organization.objects.filter(slug=name).first()
    if organization is None:
        raise CommandError(f"No organization named {name!r}")
    return organization


def user_of(organization: Organization, email: str) -> User:
    user = User.objects.filter(organization=organization, email__iexact=email).first()
    if user is None:
        raise CommandError(f"No user {email!r} in {organization.name!r}")
    return user


def archive_by_uuid(value: str) -> Archive:
    try:
        return Archive.objects.select_related("organization", "user", "device").get(uuid=uuid.UUID(value))
    except (ValueError, Archive.DoesNotExist):
        raise CommandError(f"No archive {value!r}") from None


def size_parse(value: str) -> int | None:
    try:
        return quota_size_parse(value)
    except ValueError as error:
        raise CommandError(str(error)) from None
