"""Responses Haven refuses beyond pysaml2's own checks (SHA-1 anywhere in a signature, encrypted
assertions), and the reason each refusal gives the person: specific, actionable, and never a
value the response itself supplied. Every refusal is audited with the same reason."""
import html
import re

import pytest
import saml2.time_util
from django.test import Client
from saml2.xmldsig import DIGEST_RIPEMD160, DIGEST_SHA1, DIGEST_SHA512, SIG_RSA_SHA1, SIG_RSA_SHA512

from accounts.models import AuditEvent
from console.saml.sp_keys import sp_keypair
from tests.saml.idp import make_idp
from tests.saml.test_saml_login import _acs, _signed_in_as, _sp_metadata, _start, _use_idp, idp_a  # noqa: F401


def _reason(response) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    found = re.search(rb"identity provider: (.*?)\.</p>", response.content, re.S)
    assert found, response.content
    return html.unescape(found.group(1).decode())


def _refused_because(browser, org, body, expected: str) -> str:
    response = _acs(browser, org, body)
    reason = _reason(response)
    assert expected in reason, reason
    assert not _signed_in_as(browser)
    audited = AuditEvent.objects.filter(organization=org, action="saml.login.rejected").latest("occurred_at")
    assert audited.detail["reason"] == reason
    return reason


@pytest.mark.parametrize("sign_response", [True, False])
def test_a_sha1_digest_under_a_sha256_signature_is_refused(idp_a, org_a, alice, sign_response):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email, digest_alg=DIGEST_SHA1, sign_response=sign_response)

    _refused_because(browser, org_a, body, "SHA-1 digest, which is refused")


def test_any_digest_outside_sha2_is_refused(idp_a, org_a, alice):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email, digest_alg=DIGEST_RIPEMD160)

    _refused_because(browser, org_a, body, "a digest Haven refuses")


def test_a_sha1_signature_says_so(idp_a, org_a, alice):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email, sign_alg=SIG_RSA_SHA1)

    _refused_because(browser, org_a, body, "signed with SHA-1, which is refused")


def test_stronger_sha2_algorithms_sign_in(idp_a, org_a, alice):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email, sign_alg=SIG_RSA_SHA512, digest_alg=DIGEST_SHA512)

    assert _acs(browser, org_a, body).status_code == 302
    assert _signed_in_as(browser) == alice.email


def test_an_encrypted_assertion_is_refused_by_name(idp_a, org_a, alice, caplog):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email, sign_response=True,
                        encrypt_for=sp_keypair().cert_file.read_text())

    _refused_because(browser, org_a, body, "the assertion is encrypted")
    assert "AttributeError" not in caplog.text


def test_an_expired_assertion_says_it_expired(idp_a, org_a, alice, monkeypatch):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email, lifetime_minutes=15)
    now = saml2.time_util.utc_now
    monkeypatch.setattr(saml2.time_util, "utc_now", lambda: now() + 3600)  # posted an hour later

    _refused_because(browser, org_a, body, "the assertion has expired")


def test_an_assertion_from_the_future_says_so(idp_a, org_a, alice, monkeypatch):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email)
    now = saml2.time_util.utc_now
    monkeypatch.setattr(saml2.time_util, "utc_now", lambda: now() - 3600)

    _refused_because(browser, org_a, body, "not valid yet")


def test_a_reused_response_says_it_was_used(idp_a, org_a, alice):  # noqa: F811
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email)
    assert _acs(browser, org_a, body).status_code == 302
    browser.logout()

    _refused_because(browser, org_a, body, "already used")


def test_signature_problems_say_what_is_wrong(idp_a, org_a, alice, tmp_path):  # noqa: F811
    browser = Client()
    _refused_because(browser, org_a, idp_a.answer(_start(browser, org_a), alice.email, sign=False), "not signed")
    impostor = make_idp(tmp_path / "impostor", idp_a.entity_id, _sp_metadata(org_a), key_name="impostor")
    _refused_because(browser, org_a, impostor.answer(_start(browser, org_a), alice.email),
                     "could not be verified with the identity provider's certificate")


def test_a_person_without_an_account_is_told_so(idp_a, org_a):  # noqa: F811
    browser = Client()

    _refused_because(browser, org_a, idp_a.answer(_start(browser, org_a), "newcomer@a.example"),
                     "no active Haven account of this organization")


def test_the_reason_never_repeats_what_the_response_claims(idp_a, org_a, alice, tmp_path):  # noqa: F811
    """Another IdP (a known key, so the signature verifies) names itself in the issuer: the page
    says it is the wrong IdP without echoing the issuer; the audit log keeps it."""
    rogue = make_idp(tmp_path / "rogue", "https://rogue.example/<b>idp", _sp_metadata(org_a))
    _use_idp(org_a, rogue)
    org_a.saml.refresh_from_db()
    type(org_a.saml).objects.filter(pk=org_a.saml.pk).update(idp_entity_id=idp_a.entity_id)
    browser = Client()

    response = _acs(browser, org_a, rogue.answer(_start(browser, org_a), alice.email))

    assert "not this organization's IdP" in _reason(response)
    assert b"rogue" not in response.content
    audited = AuditEvent.objects.filter(organization=org_a, action="saml.login.rejected").latest("occurred_at")
    assert "rogue.example" in audited.detail["detail"]
