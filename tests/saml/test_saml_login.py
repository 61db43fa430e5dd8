"""Per-organization SAML SSO against a real signing IdP: one good login, and every attack refused."""
import re

import pytest
from django.test import Client

from accounts.models import AuditEvent, SamlSettings, User
from tests.saml.idp import make_idp


def _sp_metadata(org) -> str:
    response = Client().get(f"/saml/{org.uuid}/metadata/")
    assert response.status_code == 200
    return response.content.decode()


def _use_idp(org, idp, **options):
    SamlSettings.objects.update_or_create(organization=org, defaults={
        "enabled": True, "idp_entity_id": idp.entity_id, "idp_metadata_xml": idp.metadata_xml, **options})


@pytest.fixture
def idp_a(org_a, tmp_path, settings):
    settings.HAVEN_PUBLIC_URL = "http://testserver"
    idp = make_idp(tmp_path / "idp-a", "https://idp-a.example", _sp_metadata(org_a))
    _use_idp(org_a, idp, verified_domains="a.example")
    return idp


def _start(browser, org):
    response = browser.get(f"/saml/{org.uuid}/login/", {"next": "/"})
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def _acs(browser, org, body):
    return browser.post(f"/saml/{org.uuid}/acs/", body)


def _signed_in_as(browser):
    response = browser.get("/")
    return re.search(rb"<span>([^ ]+@[^ ]+) ", response.content) and response.status_code == 200 and \
        re.search(rb"<span>([^ ]+@[^ ]+) ", response.content).group(1).decode()


def test_a_good_login_signs_the_user_in(idp_a, org_a, alice):
    browser = Client()
    redirect = _start(browser, org_a)
    assert redirect.startswith("https://idp-a.example/sso/redirect") and "Signature=" in redirect
    response = _acs(browser, org_a, idp_a.answer(redirect, alice.email))
    assert response.status_code == 302
    assert _signed_in_as(browser) == alice.email


def _refused(browser, org, body):
    response = _acs(browser, org, body)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert _signed_in_as(browser) is None or _signed_in_as(browser) is False
    return response


def test_an_unsigned_response_is_refused(idp_a, org_a, alice):
    browser = Client()
    _refused(browser, org_a, idp_a.answer(_start(browser, org_a), alice.email, sign=False))
    assert AuditEvent.objects.filter(organization=org_a, action="saml.login.rejected").exists()


def test_a_response_signed_by_another_key_is_refused(idp_a, org_a, alice, tmp_path):
    impostor = make_idp(tmp_path / "impostor", idp_a.entity_id, _sp_metadata(org_a), key_name="impostor")
    browser = Client()
    _refused(browser, org_a, impostor.answer(_start(browser, org_a), alice.email))


def test_a_replayed_response_is_refused(idp_a, org_a, alice):
    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email)
    assert _acs(browser, org_a, body).status_code == 302
    attacker = Client()
    _start(attacker, org_a)
    _refused(attacker, org_a, body)
    browser.logout()
    _refused(browser, org_a, body)


def test_an_expired_response_is_refused(idp_a, org_a, alice):
    browser = Client()
    _refused(browser, org_a, idp_a.answer(_start(browser, org_a), alice.email, lifetime_minutes=-30))


def test_a_response_for_another_audience_is_refused(org_a, org_b, alice, tmp_path, settings):
    """The IdP knows two SPs; a response it made for org B's SP is posted to org A's."""
    settings.HAVEN_PUBLIC_URL = "http://testserver"
    idp = make_idp(tmp_path / "idp", "https://idp-shared.example", _sp_metadata(org_a), _sp_metadata(org_b))
    _use_idp(org_a, idp)
    browser = Client()
    org_b_sp = f"http://testserver/saml/{org_b.uuid}/metadata/"
    _refused(browser, org_a, idp.answer(_start(browser, org_a), alice.email, audience=org_b_sp))


def test_sha1_signatures_are_refused(idp_a, org_a, alice):
    browser = Client()
    _refused(browser, org_a, idp_a.answer(_start(browser, org_a), alice.email, sha1=True))


def test_another_orgs_idp_cannot_sign_in_this_orgs_user(idp_a, org_a, org_b, alice, tmp_path):
    idp_b = make_idp(tmp_path / "idp-b", "https://idp-b.example", _sp_metadata(org_a))
    _use_idp(org_b, idp_b)
    browser = Client()
    _refused(browser, org_a, idp_b.answer(_start(browser, org_a), alice.email, parsed_by=idp_a))


def test_an_idp_cannot_sign_in_a_user_of_another_org(idp_a, org_a, mallory):
    browser = Client()
    _refused(browser, org_a, idp_a.answer(_start(browser, org_a), mallory.email))


def test_an_unsolicited_response_is_refused(idp_a, org_a, alice):
    browser, other = Client(), Client()
    body = idp_a.answer(_start(browser, org_a), alice.email)
    _refused(other, org_a, body)  # a browser that never asked to sign in


@pytest.mark.parametrize("sign_response", [True, False])
def test_signature_wrapping_is_refused(idp_a, org_a, alice, bob, sign_response):
    """XSW: a forged, unsigned assertion for Bob placed next to Alice's signed one — with the
    response signed too, and with only the assertion signed (the classic XSW target)."""
    import base64

    browser = Client()
    body = idp_a.answer(_start(browser, org_a), alice.email, sign_response=sign_response)
    xml = base64.b64decode(body["SAMLResponse"]).decode()
    start = xml.index("<saml:Assertion")
    end = xml.index("</saml:Assertion>") + len("</saml:Assertion>")
    signed = xml[start:end]
    forged = re.sub(r'<ds:Signature.*?</ds:Signature>', "", signed, flags=re.S).replace(alice.email, bob.email)
    forged = re.sub(r'ID="[^"]+"', 'ID="id-forged"', forged, count=1)
    for wrapped in (xml[:start] + forged + signed + xml[end:], xml[:start] + signed + forged + xml[end:],
                    xml[:start] + forged + xml[end:]):
        attempt = dict(body, SAMLResponse=base64.b64encode(wrapped.encode()).decode())
        response = _acs(browser, org_a, attempt)
        assert 400 <= response.status_code < 500
        assert _signed_in_as(browser) != bob.email


def test_just_in_time_creation_only_when_switched_on(idp_a, org_a):
    browser = Client()
    _refused(browser, org_a, idp_a.answer(_start(browser, org_a), "newcomer@a.example"))
    SamlSettings.objects.filter(organization=org_a).update(jit_enabled=True)
    browser = Client()
    assert _acs(browser, org_a, idp_a.answer(_start(browser, org_a), "newcomer@a.example")).status_code == 302
    newcomer = User.objects.get(email="newcomer@a.example")
    assert newcomer.organization == org_a and not newcomer.has_usable_password()


def test_the_login_page_finds_the_org_by_verified_domain_or_slug(idp_a, org_a):
    by_domain = Client().post("/saml/start/", {"identifier": "someone@a.example"})
    assert by_domain.status_code == 302 and by_domain["Location"].startswith(f"/saml/{org_a.uuid}/login/")
    by_slug = Client().post("/saml/start/", {"identifier": org_a.slug})
    assert by_slug.status_code == 302
    assert Client().post("/saml/start/", {"identifier": "someone@unverified.example"}).status_code == 404


def test_sso_pages_of_an_org_without_sso_are_404(org_b):
    assert Client().get(f"/saml/{org_b.uuid}/login/").status_code == 404
    assert Client().post(f"/saml/{org_b.uuid}/acs/", {"SAMLResponse": "x"}).status_code == 404


def test_an_assertion_id_is_accepted_once_even_without_in_response_to(org_a, idp_a):
    """Replay protection does not depend on the session's outstanding requests."""
    from types import SimpleNamespace

    from django.test import RequestFactory
    from django.urls import resolve

    from console.saml.views import AssertionConsumerView, SamlRejected

    request = RequestFactory().post(f"/saml/{org_a.uuid}/acs/")
    request.resolver_match = resolve(f"/saml/{org_a.uuid}/acs/")
    confirmation = SimpleNamespace(subject_confirmation_data=SimpleNamespace(not_on_or_after="2099-01-01T00:00:00Z"))
    assertion = SimpleNamespace(id="id-once", signature=None,
                                subject=SimpleNamespace(subject_confirmation=[confirmation]))
    response = SimpleNamespace(issuer=lambda: idp_a.entity_id, response=SimpleNamespace(signature=None),
                               assertion=assertion)
    view = AssertionConsumerView()
    view.request = request
    view.custom_validation(response)
    with pytest.raises(SamlRejected, match="replay"):
        view.custom_validation(response)
    response.issuer = lambda: "https://someone-else.example"
    assertion.id = "id-other"
    with pytest.raises(SamlRejected, match="not this organization's IdP"):
        view.custom_validation(response)


def test_sp_metadata_advertises_only_the_sha2_methods_haven_accepts(org_a):
    from console.saml.checks import DIGEST_ALGORITHMS, SIGNATURE_ALGORITHMS

    metadata = _sp_metadata(org_a)
    digests = re.findall(r'DigestMethod[^>]*Algorithm="([^"]+)"', metadata)
    signing = re.findall(r'SigningMethod[^>]*Algorithm="([^"]+)"', metadata)
    assert digests and signing  # still advertised, only trimmed
    assert set(digests) <= DIGEST_ALGORITHMS and set(signing) <= SIGNATURE_ALGORITHMS
    assert not [alg for alg in digests + signing if "md5" in alg or alg.endswith(("sha1", "#rsa-sha1"))]
