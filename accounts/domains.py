"""Verified email domains of an organization (writes).

An organization's verified domains decide which addresses the login page sends to its IdP and
which addresses its SCIM client may provision (console/scim). They are set by Haven operators —
after the organization proved it owns them — never by the organization itself, and a domain
belongs to one organization at most: two owners would let one provision the other's people.
"""
import re

from django.db import transaction

from accounts.models import Organization, SamlSettings
from accounts.services import audit_record

_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")


class DomainRefused(ValueError):
    """Not a domain name, or already verified for another organization."""


def domain_normalize(value: str) -> str:
    domain = value.strip().lower().rstrip(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise DomainRefused(f"{value!r} is not a domain name") from None
    if not _DOMAIN.fullmatch(domain):
        raise DomainRefused(f"{value!r} is not a domain name")
    return domain


def domain_owner(domain: str, *, other_than: Organization) -> Organization | None:
    """The other organization that has `domain` verified, if any."""
    others = (SamlSettings.objects.exclude(organization=other_than)
              .filter(verified_domains__icontains=domain).select_related("organization"))
    return next((other.organization for other in others if domain in other.domains()), None)


@transaction.atomic
def verified_domains_change(*, organization: Organization, add: list[str], remove: list[str],
                            actor_label: str) -> list[str]:
    """Add and remove verified domains; returns the organization's domains afterwards."""
    added, removed = [domain_normalize(d) for d in add], {domain_normalize(d) for d in remove}
    saml, _ = SamlSettings.objects.select_for_update().get_or_create(organization=organization)
    for domain in added:
        owner = domain_owner(domain, other_than=organization)
        if owner is not None:
            raise DomainRefused(f"{domain} is verified for another organization ({owner.name})")
    domains = [d for d in saml.domains() if d not in removed]
    domains += [d for d in dict.fromkeys(added) if d not in domains]
    if domains != saml.domains():
        saml.verified_domains = ",".join(domains)
        saml.save(update_fields=["verified_domains", "updated_at"])
        audit_record(organization=organization, actor=None, actor_label=actor_label,
                     action="organization.domains.change", target_type="organization",
                     target_uuid=organization.uuid, detail={"added": added, "removed": sorted(removed),
                                                            "domains": domains})
    return domains
