"""What the safeguard commands share: finding the organization, user and archive, reading sizes."""
import re
import uuid

from django.core.management.base import CommandError

from accounts.models import Organization, User
from archives.models import Archive


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
    """'none' → no quota; 5000000, 500M, 20G, 1T (powers of 1000; KiB/MiB/GiB/TiB powers of 1024)."""
    if value.strip().lower() in ("none", "off", ""):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:([kmgt])(i?)b?)?\s*", value.lower())
    if not match:
        raise CommandError(f"{value!r} is not a size such as 500M, 20G, 1TiB or none")
    base = 1024 if match[3] else 1000
    return int(match[1]) * base ** ("kmgt".index(match[2]) + 1 if match[2] else 0)
