"""Each organization's SAML service provider, built per request (djangosaml2's config loader).

The organization comes from the URL (/saml/<org uuid>/...), never from the response: its SP has
its own entity id and ACS URL, and its metadata store holds that organization's IdP only, so
another organization's IdP cannot even be verified here. Signatures are SHA-256; assertions must
be signed; unsolicited responses are refused (every login is SP-initiated and InResponseTo is
checked against the requests this browser session made). Every organization's SP signs with the
installation's one key pair, the same on every web host (sp_keys.py).
"""
from django.conf import settings
from django.http import Http404
from saml2 import BINDING_HTTP_POST
from saml2.config import SPConfig
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_UNSPECIFIED
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from accounts.models import Organization, SamlSettings
from console.saml.sp_keys import sp_keypair


def public_base(request) -> str:
    return (settings.HAVEN_PUBLIC_URL or request.build_absolute_uri("/")).rstrip("/")


def organization_from_request(request) -> Organization:
    match = request.resolver_match
    org_id = match.kwargs.get("org_id") if match else None
    organization = Organization.objects.filter(uuid=org_id).first() if org_id else None
    if organization is None:
        raise Http404("No such organization")
    return organization


def saml_settings_for(organization: Organization) -> SamlSettings:
    saml = SamlSettings.objects.filter(organization=organization, enabled=True).first()
    if saml is None or not saml.idp_metadata_xml:
        raise Http404("Single sign-on is not set up for this organization")
    return saml


def sp_urls(base: str, organization: Organization) -> dict[str, str]:
    root = f"{base}/saml/{organization.uuid}"
    return {"entity_id": f"{root}/metadata/", "acs": f"{root}/acs/", "login": f"{root}/login/"}


def sp_config_for_request(request) -> SPConfig:
    """djangosaml2's SAML_CONFIG_LOADER: the SP of the organization named in the URL."""
    organization = organization_from_request(request)
    saml = SamlSettings.objects.filter(organization=organization).first()
    urls = sp_urls(public_base(request), organization)
    pair = sp_keypair()
    config = {
        "entityid": urls["entity_id"],
        "xmlsec_binary": settings.HAVEN_XMLSEC_BINARY,
        "allow_unknown_attributes": True,
        "accepted_time_diff": 60,
        "service": {"sp": {
            "name": f"Haven — {organization.name}",
            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_UNSPECIFIED],
            "endpoints": {"assertion_consumer_service": [(urls["acs"], BINDING_HTTP_POST)]},
            "allow_unsolicited": False,
            "authn_requests_signed": True,
            "logout_requests_signed": True,
            "want_assertions_signed": True,
            "want_response_signed": False,
            "signing_algorithm": SIG_RSA_SHA256,
            "digest_algorithm": DIGEST_SHA256,
            "only_use_keys_in_metadata": True,
        }},
        "key_file": str(pair.key_file),
        "cert_file": str(pair.cert_file),
        # A staged next certificate is published too, so IdPs trust it before it signs (rollover).
        **({"additional_cert_files": [str(pair.next_cert_file)]} if pair.next_cert_file else {}),
        "metadata": {"inline": [saml.idp_metadata_xml]} if saml and saml.idp_metadata_xml else {},
    }
    sp_config = SPConfig()
    sp_config.load(config)
    return sp_config
