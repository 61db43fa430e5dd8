"""SAML endpoints of one organization (/saml/<org uuid>/...), on top of djangosaml2's views.

djangosaml2 brings the protocol (pysaml2); Haven adds what multi-tenancy and security need:
the per-organization SP (sp.py), the issuer check, replay protection for assertion ids, SHA-2
only (checks.py), and a 4xx page saying why plus an audit record for every rejected response.
"""
import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from djangosaml2 import views as saml_views
from saml2.metadata import entity_descriptor

from accounts.models import Organization, SamlAssertion, SamlSettings
from accounts.services import audit_record
from console.saml.checks import (
    DIGEST_ALGORITHMS,
    SIGNATURE_ALGORITHMS,
    SamlRejected,
    algorithms_check,
    assertion_check,
    explained,
)
from console.saml.sp import organization_from_request, saml_settings_for
from console.saml.sp_keys import SpKeyUnavailable

logger = logging.getLogger(__name__)


class SpKeyMixin:
    """No usable SP key pair (production without HAVEN_STORAGE_KEY or the SP key files): a 503
    naming what the operator must set, never a per-host key that other web hosts would not share."""

    def dispatch(self, request, *args, **kwargs):
        try:
            return super().dispatch(request, *args, **kwargs)
        except SpKeyUnavailable as error:
            logger.error("SAML is unavailable: %s", error)
            return HttpResponse("Single sign-on is unavailable: Haven's SAML service provider key is not "
                                "configured. The operator must set HAVEN_STORAGE_KEY, or HAVEN_SAML_SP_KEY_FILE "
                                "and HAVEN_SAML_SP_CERT_FILE.", status=503, content_type="text/plain")


class OrganizationMixin(SpKeyMixin):
    def dispatch(self, request, *args, **kwargs):
        saml_settings_for(organization_from_request(request))  # 404 unless this org uses SSO
        return super().dispatch(request, *args, **kwargs)


class LoginView(OrganizationMixin, saml_views.LoginView):
    pass


def advertised_algorithms_trim(descriptor) -> None:
    """pysaml2 lists every digest and signing method xmlsec1 supports (MD5 and SHA-1 included) in
    the metadata's extensions; Haven refuses all but SHA-2 (console/saml/checks.py), so it
    advertises only those: an IdP that picks from the list never picks one that will be refused."""
    extensions = descriptor.extensions
    if extensions is None:
        return
    allowed = {"DigestMethod": DIGEST_ALGORITHMS, "SigningMethod": SIGNATURE_ALGORITHMS}
    extensions.extension_elements = [
        element for element in extensions.extension_elements
        if element.tag not in allowed or element.attributes.get("Algorithm") in allowed[element.tag]]


class MetadataView(SpKeyMixin, saml_views.MetadataView):
    """The organization's SP metadata (available before SSO is switched on, for the IdP's admin)."""

    def dispatch(self, request, *args, **kwargs):
        organization_from_request(request)
        return super().dispatch(request, *args, **kwargs)

    def get(self, request, *args, **kwargs):
        descriptor = entity_descriptor(self.get_sp_config(request))
        advertised_algorithms_trim(descriptor)
        return HttpResponse(content=str(descriptor).encode("utf-8"), content_type="text/xml; charset=utf-8")


class AssertionConsumerView(OrganizationMixin, saml_views.AssertionConsumerServiceView):
    rejection: SamlRejected | None = None

    def custom_validation(self, response):
        """djangosaml2 turns any exception raised here into one SuspiciousOperation: the refusal
        is kept on the view so the page and the audit record can say what it was."""
        try:
            self._validate(response)
        except SamlRejected as rejected:
            self.rejection = rejected
            raise

    def _validate(self, response):
        organization = organization_from_request(self.request)
        saml = SamlSettings.objects.get(organization=organization)
        issuer = response.issuer()
        if saml.idp_entity_id and issuer != saml.idp_entity_id:
            raise SamlRejected("it was issued by another identity provider, not this organization's IdP",
                               f"issuer {str(issuer)[:200]!r}")
        assertion_check(response)
        algorithms_check(response)
        not_after = None
        for confirmation in response.assertion.subject.subject_confirmation:
            data = confirmation.subject_confirmation_data
            if data is not None and data.not_on_or_after:
                not_after = data.not_on_or_after
        expires = (datetime.fromisoformat(not_after.replace("Z", "+00:00")) if not_after
                   else timezone.now() + timedelta(hours=1))
        SamlAssertion.objects.filter(not_on_or_after__lt=timezone.now()).delete()
        try:
            with transaction.atomic():
                SamlAssertion.objects.create(organization=organization, assertion_id=response.assertion.id,
                                             not_on_or_after=expires)
        except IntegrityError:
            raise SamlRejected("the assertion was already used (replay)", "replayed assertion id") from None

    def handle_acs_failure(self, request, exception=None, status=403, **kwargs):
        organization = organization_from_request(request)
        rejection = self.rejection or explained(exception)
        audit_record(organization=organization, actor=None, actor_label="saml", action="saml.login.rejected",
                     target_type="organization", target_uuid=organization.uuid,
                     detail={"reason": rejection.reason, "detail": rejection.detail[:300]})
        return render(request, "console/saml/rejected.html", {"organization": organization,
                                                              "reason": rejection.reason},
                      status=status if 400 <= status < 500 else 403)

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request)
        except SamlRejected as rejected:  # pragma: no cover - custom_validation errors are caught upstream
            return self.handle_acs_failure(request, exception=rejected, status=400)


def sso_start(request):
    """The console's "sign in with single sign-on": by email domain (verified) or organization slug."""
    value = (request.POST.get("identifier") or request.GET.get("identifier") or "").strip().lower()
    organization = None
    if "@" in value:
        domain = value.rsplit("@", 1)[1]
        for saml in SamlSettings.objects.filter(enabled=True).select_related("organization"):
            if domain in saml.domains():
                organization = saml.organization
                break
    elif value:
        organization = Organization.objects.filter(slug=value, saml__enabled=True).first()
    if organization is None:
        return render(request, "console/login.html", {"sso_error": "No single sign-on is set up for that address or "
                                                                   "organization.", "form": None}, status=404)
    return redirect(f"/saml/{organization.uuid}/login/?next=/")
