"""Operators record an organization's verified domains with manage.py or the Django admin; a
domain belongs to one organization at most (SCIM provisions only inside them)."""
import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent, SamlSettings, User
from tests.conftest import PASSWORD


def _domains(org):
    return SamlSettings.objects.get(organization=org).domains()


def test_it_adds_and_removes_domains_and_audits(org_a, capsys):
    call_command("verifydomain", "--org", org_a.name, "--add", "A.Example", "--add", "sub.a.example")
    assert _domains(org_a) == ["a.example", "sub.a.example"]
    assert "a.example" in capsys.readouterr().out
    call_command("verifydomain", "--org", org_a.name, "--remove", "sub.a.example")
    assert _domains(org_a) == ["a.example"]
    events = AuditEvent.objects.filter(organization=org_a, action="organization.domains.change")
    assert events.count() == 2 and events.first().actor_label == "manage.py verifydomain"


def test_a_domain_of_another_organization_is_refused(org_a, org_b):
    call_command("verifydomain", "--org", org_a.name, "--add", "a.example")
    with pytest.raises(CommandError, match="another organization"):
        call_command("verifydomain", "--org", org_b.name, "--add", "A.EXAMPLE")
    assert not SamlSettings.objects.filter(organization=org_b, verified_domains__icontains="a.example").exists()


@pytest.mark.parametrize("bad", ["not a domain", "a..example", "-a.example", "example", "a.example/x", "a@b.example"])
def test_what_is_not_a_domain_name_is_refused(org_a, bad):
    with pytest.raises(CommandError, match="not a domain name"):
        call_command("verifydomain", "--org", org_a.name, f"--add={bad}")


def test_an_unknown_organization_is_a_clear_error(db):
    with pytest.raises(CommandError, match="No organization"):
        call_command("verifydomain", "--org", "Nobody", "--add", "a.example")


def test_operators_set_domains_in_the_django_admin_with_the_same_rules(client, org_a, org_b):
    call_command("verifydomain", "--org", org_b.name, "--add", "b.example")
    saml, _ = SamlSettings.objects.get_or_create(organization=org_a)
    User.objects.create_superuser("operator@haven.example", PASSWORD)
    client.post("/admin/login/", {"username": "operator@haven.example", "password": PASSWORD})
    url = f"/admin/accounts/samlsettings/{saml.pk}/change/"
    assert client.get(url).status_code == 200
    refused = client.post(url, {"verified_domains": "a.example, b.example"})
    assert refused.status_code == 200 and "another organization" in refused.content.decode()
    assert _domains(org_a) == []
    assert client.post(url, {"verified_domains": "A.example"}).status_code == 302
    assert _domains(org_a) == ["a.example"]
    assert AuditEvent.objects.filter(organization=org_a, action="organization.domains.change").exists()
