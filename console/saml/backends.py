"""Who a SAML assertion signs in: a user of *this* organization, found by (org, email)."""
import logging

from django.contrib.auth.backends import ModelBackend

from accounts.models import Role, SamlSettings, User
from accounts.services import audit_record, highest_role
from console.saml.sp import organization_from_request

logger = logging.getLogger(__name__)


def _first(attributes: dict, name: str) -> str:
    values = attributes.get(name) or []
    return str(values[0]).strip() if values else ""


class OrganizationSamlBackend(ModelBackend):
    """Authenticates the user a verified assertion names, scoped to the URL's organization.

    A user of another organization with the same address is never matched (emails are unique
    across Haven, so such a user simply is not found here). Unknown users are created only when
    the organization turned just-in-time creation on; SAML groups then set their role, unless
    SCIM manages the organization (SCIM wins).
    """

    def authenticate(self, request, session_info=None, attribute_mapping=None, create_unknown_user=None,
                     assertion_info=None, **kwargs):
        if session_info is None or request is None:
            return None
        organization = organization_from_request(request)
        saml = SamlSettings.objects.get(organization=organization)
        attributes = session_info.get("ava") or {}
        email = (_first(attributes, saml.attribute_email) if saml.attribute_email else
                 str(session_info["name_id"].text if hasattr(session_info["name_id"], "text")
                     else session_info["name_id"]).strip()).lower()
        if "@" not in email:
            return None
        user = User.objects.filter(organization=organization, email__iexact=email).first()
        if user is None:
            if not saml.jit_enabled or User.objects.filter(email__iexact=email).exists():
                return None
            user = User.objects.create_user(email, None, organization=organization,
                                            full_name=_first(attributes, saml.attribute_name)[:200],
                                            role=self._role_from_groups(organization, attributes, saml))
            audit_record(organization=organization, actor=None, actor_label="saml", action="user.create.jit",
                         target_type="user", target_uuid=user.uuid, detail={"email": email})
        if not user.is_active:
            return None
        return user

    @staticmethod
    def _role_from_groups(organization, attributes: dict, saml: SamlSettings) -> str:
        if organization.scim_tokens.filter(revoked_at__isnull=True).exists():
            return Role.USER  # SCIM manages roles
        names = set(attributes.get(saml.attribute_groups) or [])
        return highest_role(organization.groups.filter(name__in=names).values_list("role", flat=True))

    def get_user(self, user_id):
        return super().get_user(user_id)
