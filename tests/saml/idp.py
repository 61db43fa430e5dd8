"""A real SAML identity provider, in process: pysaml2's own IdP (saml2.server.Server) with a key
and certificate made here. It answers the AuthnRequests Haven's SP really sends."""
import base64
import datetime
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.assertion import Policy
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

AUTHN = {"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
         "authn_auth": "https://idp.example/login"}


def _keypair(directory: Path, name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_file), str(cert_file)


@dataclass
class TestIdP:
    entity_id: str
    server: Server
    metadata_xml: str

    def answer(self, login_redirect: str, email: str, *, sign: bool = True, sign_response: bool | None = None,
               sha1: bool = False, sign_alg: str | None = None, digest_alg: str | None = None,
               encrypt_for: str | None = None,
               audience: str | None = None, lifetime_minutes: int = 15, groups: tuple[str, ...] = (),
               parsed_by: "TestIdP | None" = None) -> dict:
        """Answer the AuthnRequest in the SP's redirect: the POST body for Haven's ACS.

        `sha1`: SHA-1 signature and digest; `sign_alg`/`digest_alg` set either on its own.
        `encrypt_for`: a PEM certificate; the assertion is sent as an EncryptedAssertion to it.
        `parsed_by`: another IdP reads the request (it was addressed to that one), this one signs.
        """
        query = parse_qs(urlparse(login_redirect).query)
        reader = (parsed_by or self).server
        request = reader.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        args = reader.response_args(request.message)
        if audience:
            args["sp_entity_id"] = audience
        self.server.config.setattr("idp", "policy", Policy({"default": {"lifetime": {"minutes": lifetime_minutes}}},
                                                           mds=self.server.metadata))
        response = self.server.create_authn_response(
            identity={"mail": [email], "displayName": ["Test Person"], "groups": list(groups)}, userid=email,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email), authn=AUTHN,
            sign_response=sign if sign_response is None else sign_response, sign_assertion=sign,
            sign_alg=sign_alg or (SIG_RSA_SHA1 if sha1 else SIG_RSA_SHA256),
            digest_alg=digest_alg or (DIGEST_SHA1 if sha1 else DIGEST_SHA256),
            **({"encrypt_assertion": True, "encrypt_cert_assertion": encrypt_for} if encrypt_for else {}),
            **args)
        return {"SAMLResponse": base64.b64encode(str(response).encode()).decode(),
                "RelayState": query.get("RelayState", [""])[0]}


def make_idp(directory: Path, entity_id: str, *sp_metadata_xml: str, key_name: str = "idp") -> TestIdP:
    directory.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = _keypair(directory, key_name)
    config = IdPConfig()
    config.load({
        "entityid": entity_id,
        "xmlsec_binary": settings.HAVEN_XMLSEC_BINARY,
        "service": {"idp": {
            "name": "Test IdP",
            "endpoints": {"single_sign_on_service": [(f"{entity_id}/sso/redirect", BINDING_HTTP_REDIRECT),
                                                     (f"{entity_id}/sso/post", BINDING_HTTP_POST)]},
            "policy": {"default": {"lifetime": {"minutes": 15}}},
            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
        }},
        "key_file": key_file,
        "cert_file": cert_file,
        "metadata": {"inline": list(sp_metadata_xml)},
    })
    server = Server(config=config)
    return TestIdP(entity_id=entity_id, server=server, metadata_xml=str(entity_descriptor(config)))
