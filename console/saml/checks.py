"""What Haven checks in a SAML response after pysaml2 verified it, and what it tells the person.

pysaml2 verifies signatures with xmlsec, which accepts SHA-1 as the signature method and as the
digest of each signed reference; Haven accepts the SHA-2 family only, for both. Haven does not
decrypt assertions (its SP publishes no encryption key; TLS protects the response in transit), so
an EncryptedAssertion is refused by name rather than crashing on a missing assertion.

Every refusal has two texts: `reason`, shown on the 4xx page — what is wrong, in words the person
or their administrator can act on, never an attacker-supplied value — and `detail`, for the audit
log only (issuers, algorithm URIs, pysaml2's own message).
"""
from django.core.exceptions import PermissionDenied
from saml2.response import (
    IncorrectlySigned,
    StatusError,
    UnsolicitedResponse,
    VerificationError,
)
from saml2.sigver import MissingKey, SignatureError
from saml2.validate import ResponseLifetimeExceed, ToEarly
from saml2.xmldsig import (
    DIGEST_SHA1,
    DIGEST_SHA224,
    DIGEST_SHA256,
    DIGEST_SHA384,
    DIGEST_SHA512,
    SIG_DSA_SHA1,
    SIG_ECDSA_SHA1,
    SIG_ECDSA_SHA224,
    SIG_ECDSA_SHA256,
    SIG_ECDSA_SHA384,
    SIG_ECDSA_SHA512,
    SIG_RSA_SHA1,
    SIG_RSA_SHA224,
    SIG_RSA_SHA256,
    SIG_RSA_SHA384,
    SIG_RSA_SHA512,
)

SIGNATURE_ALGORITHMS = frozenset({SIG_RSA_SHA224, SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512,
                                  SIG_ECDSA_SHA224, SIG_ECDSA_SHA256, SIG_ECDSA_SHA384, SIG_ECDSA_SHA512})
DIGEST_ALGORITHMS = frozenset({DIGEST_SHA224, DIGEST_SHA256, DIGEST_SHA384, DIGEST_SHA512})
SHA1 = frozenset({SIG_RSA_SHA1, SIG_DSA_SHA1, SIG_ECDSA_SHA1, DIGEST_SHA1})
GENERIC = "the response failed Haven's checks"


class SamlRejected(Exception):
    """The response is well-formed but not acceptable here (issuer, replay, algorithm, encryption)."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


def _signed_infos(response):
    assertions = getattr(response, "assertions", None) or [response.assertion]
    for element in (response.response, *assertions):
        signature = getattr(element, "signature", None)
        if signature is not None and signature.signed_info is not None:
            yield signature.signed_info


def _algorithm(element) -> str | None:
    return getattr(element, "algorithm", None) if element is not None else None


def algorithms_check(response) -> None:
    """Every signature of the response and its assertions: a SHA-2 method, SHA-2 digests."""
    for signed_info in _signed_infos(response):
        method = _algorithm(signed_info.signature_method)
        if method not in SIGNATURE_ALGORITHMS:
            raise SamlRejected("the response was signed with SHA-1, which is refused" if method in SHA1 else
                               "the response was signed with an algorithm Haven refuses (RSA or ECDSA with SHA-256 "
                               "or stronger is required)", f"signature method {str(method)[:200]!r}")
        for reference in signed_info.reference or []:
            digest = _algorithm(reference.digest_method)
            if digest not in DIGEST_ALGORITHMS:
                raise SamlRejected("the response's signature uses a SHA-1 digest, which is refused" if digest in SHA1
                                   else "the response's signature uses a digest Haven refuses (SHA-256 or stronger "
                                        "is required)", f"digest method {str(digest)[:200]!r}")


def assertion_check(response) -> None:
    """One plain assertion: an encrypted one is refused explicitly (pysaml2 leaves `assertion`
    None when it cannot decrypt, and everything after would fail on it)."""
    if getattr(response.response, "encrypted_assertion", None):
        raise SamlRejected("the assertion is encrypted, which Haven does not accept: turn assertion encryption off "
                           "at the identity provider (the response is protected by TLS)", "EncryptedAssertion")
    if response.assertion is None:
        raise SamlRejected("the response holds no assertion", "no Assertion element")


def explained(exception) -> SamlRejected:
    """A refusal from pysaml2 or djangosaml2, in words that are safe to show."""
    if isinstance(exception, SamlRejected):
        return exception
    detail = f"{type(exception).__name__}: {exception}"[:300]
    message = str(exception)
    if isinstance(exception, ResponseLifetimeExceed):
        reason = "the assertion has expired"
    elif isinstance(exception, ToEarly):
        reason = "the assertion is not valid yet (the identity provider's clock may be ahead of Haven's)"
    elif isinstance(exception, IncorrectlySigned | SignatureError) and "missing" in message.lower():
        reason = "the assertion is not signed (Haven requires signed assertions)"
    elif isinstance(exception, IncorrectlySigned | SignatureError | MissingKey):
        reason = "its signature could not be verified with the identity provider's certificate"
    elif isinstance(exception, UnsolicitedResponse):
        reason = ("Haven did not ask for it in this browser, or it was already used: start again from Haven's "
                  "sign-in page")
    elif isinstance(exception, StatusError):
        reason = "the identity provider did not sign you in"
    elif isinstance(exception, VerificationError) and message == "Condition not OK":
        reason = "the assertion is outside its validity period"
    elif message.startswith("AudienceRestrictions"):
        reason = "the assertion was made for another service provider (its audience is not this organization's)"
    elif isinstance(exception, PermissionDenied):
        reason = "no active Haven account of this organization matches the identity provider's user"
    else:
        reason = GENERIC
    return SamlRejected(reason, detail)
