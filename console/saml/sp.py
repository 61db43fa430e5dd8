"""Each organization's SAML service provider, built per request (djangosaml2's config loader).

The organization comes from the URL (/saml/<org uuid>/...), never from the response: its SP has
its own entity id and ACS URL, and its metadata store holds that organization's IdP only, so
another organization's IdP cannot even be verified here. Signatures are SHA-256; assertions must
be signed; unsolicited responses are refused (every login is SP-initiated and InResponseTo is
checked against the requests this browser session made).
"""
import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.http import Http404
from saml2 import BINDING_HTTP_POST
from saml2.config import SPConfig
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_UNSPECIFIED
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

from accounts.models import Organization, SamlSettings


def sp_keypair() -> tuple[Path, Path]:
    """The installation's SP signing key and certificate (created once, 0600 under var/saml)."""
    directory = settings.DATA_DIR / "saml"
    key_path, cert_path = directory / "sp.key", directory / "sp.crt"
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Haven SAML service provider")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650)).sign(key, hashes.SHA256()))
    for path, data in ((key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())),
                       (cert_path, cert.public_bytes(serialization.Encoding.PEM))):
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return key_path, cert_path


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
    key_file, cert_file = sp_keypair()
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
        "key_file": str(key_file),
        "cert_file": str(cert_file),
        "metadata": {"inline": [saml.idp_metadata_xml]} if saml and saml.idp_metadata_xml else {},
    }
    sp_config = SPConfig()
    sp_config.load(config)
    return sp_config
