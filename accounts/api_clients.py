"""API clients of the public API (DESIGN §12): scoped keys an organization's integrations use.

A key is `hvp_` + 32 random bytes; only its SHA-256 is stored, so it is shown once, when made.
Creating and revoking are audited; so is every call (`api_call_record`, from the API views).
"""
import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiClient, AuditEvent, Organization, Role, User
from accounts.selectors import one_or_404
from accounts.services import audit_record

API_KEY_PREFIX = "hvp_"
SCOPES = ("devices:read", "archives:read", "restores:write", "users:write", "audit:read", "alerts:read",
          "alerts:write", "events:read")
# A key's last use is written at most this often: a busy integration must not write on every call.
_TOUCH_EVERY = timedelta(seconds=60)


class ApiClientInvalid(ValueError):
    """Bad name or scopes; the message says what to send instead."""


def _key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_scopes_parse(scopes) -> list[str]:
    """Known scopes, deduplicated in the canonical order; at least one."""
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ApiClientInvalid(f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
    if not scopes:
        raise ApiClientInvalid(f"give at least one scope: {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in scopes]


@transaction.atomic
def api_client_create(*, organization: Organization, name: str, scopes, created_by: User | None = None,
                      actor_label: str | None = None) -> tuple[ApiClient, str]:
    """A new client and its key (returned only here). Clients asking for restores act on the
    authority of `created_by`, so one with `restores:write` needs someone who may restore."""
    name = (name or "").strip()[:100] or "API client"
    scopes = api_scopes_parse(scopes)
    if created_by is not None and created_by.organization_id != organization.pk:
        raise ApiClientInvalid("the creator must belong to the organization")
    if "restores:write" in scopes and (
            created_by is None or created_by.role not in (Role.ORG_ADMIN, Role.RESTORE_OPERATOR)):
        raise ApiClientInvalid("restores:write needs a creator who may restore (an org_admin or "
                               "restore_operator): the client's restores run on their authority")
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    client = ApiClient.objects.create(organization=organization, name=name, scopes=scopes, key_hash=_key_hash(raw),
                                      key_prefix=raw[:10], created_by=created_by)
    audit_record(organization=organization, actor=created_by, actor_label=actor_label, action="api_client.create",
                 target_type="api_client", target_uuid=client.uuid, detail={"name": name, "scopes": scopes})
    return client, raw


def api_client_lookup(raw: str) -> ApiClient | None:
    """The live (unrevoked) client of a key, or None; its last use is recorded."""
    if not raw.startswith(API_KEY_PREFIX):
        return None
    client = (ApiClient.objects.select_related("organization", "created_by")
              .filter(key_hash=_key_hash(raw), revoked_at__isnull=True).first())
    if client is not None:
        now = timezone.now()
        if client.last_used_at is None or now - client.last_used_at > _TOUCH_EVERY:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
            client.last_used_at = now
    return client


def api_client_revoke(*, client: ApiClient, actor: User | None, actor_label: str | None = None) -> None:
    """Revoke at once: the next call with the key is answered 401."""
    if ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit_record(organization=client.organization, actor=actor, actor_label=actor_label,
                     action="api_client.revoke", target_type="api_client", target_uuid=client.uuid,
                     detail={"name": client.name})


def api_call_record(*, client: ApiClient, method: str, path: str, status: int, operation: str) -> AuditEvent:
    """One audit row per call of the public API, answered or refused (scope, 404, rate limit)."""
    return audit_record(organization=client.organization, actor=None, actor_label=client.label, action="api.call",
                        target_type="api_client", target_uuid=client.uuid,
                        detail={"method": method, "path": path[:500], "status": status, "operation": operation})


# --- reads (the console page) -----------------------------------------------------------------

def api_clients_visible_to(actor: User) -> QuerySet[ApiClient]:
    """Administrators see their organization's clients; nobody else sees any."""
    if not actor.is_active or actor.role != Role.ORG_ADMIN:
        return ApiClient.objects.none()
    return ApiClient.objects.filter(organization_id=actor.organization_id).select_related("created_by")


def api_client_for_user(actor: User, client_uuid) -> ApiClient:
    return one_or_404(api_clients_visible_to(actor), client_uuid, kind="API client")
