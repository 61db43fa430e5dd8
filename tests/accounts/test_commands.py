"""createorg and createuser: scriptable, idempotent, passwords from HAVEN_PASSWORD."""
import pytest
from django.core.management import CommandError, call_command

from accounts.models import Organization, User
from tests.conftest import PASSWORD


@pytest.fixture
def password_env(monkeypatch):
    monkeypatch.setenv("HAVEN_PASSWORD", PASSWORD)


def test_createorg_creates_org_and_admin_once(db, password_env, capsys):
    call_command("createorg", "Acme Corp", "--admin", "Root@Acme.example")
    call_command("createorg", "Acme Corp", "--admin", "root@acme.example")
    assert Organization.objects.filter(name="Acme Corp").count() == 1
    admin = User.objects.get(email="root@acme.example")
    assert admin.role == "org_admin" and admin.organization.slug == "acme-corp"
    assert admin.check_password(PASSWORD)
    assert "exists, unchanged" in capsys.readouterr().out


def test_createuser_is_idempotent_and_keeps_the_password(db, password_env, monkeypatch):
    call_command("createorg", "Acme", "--admin", "root@acme.example")
    call_command("createuser", "--org", "Acme", "carol@acme.example", "--role", "restore_operator")
    monkeypatch.setenv("HAVEN_PASSWORD", "another long password 42")
    call_command("createuser", "--org", "Acme", "carol@acme.example", "--role", "restore_operator")
    carol = User.objects.get(email="carol@acme.example")
    assert carol.role == "restore_operator" and carol.check_password(PASSWORD)
    assert User.objects.filter(email="carol@acme.example").count() == 1


def test_createuser_refuses_a_user_of_another_org(db, password_env):
    call_command("createorg", "Acme", "--admin", "root@acme.example")
    call_command("createorg", "Other", "--admin", "root@other.example")
    with pytest.raises(CommandError, match="already belongs to organization 'Acme'"):
        call_command("createuser", "--org", "Other", "root@acme.example")


def test_createuser_needs_an_existing_org(db, password_env):
    with pytest.raises(CommandError, match="No organization named 'Nope'"):
        call_command("createuser", "--org", "Nope", "x@nope.example")


def test_createuser_refuses_an_unknown_role(db, password_env):
    call_command("createorg", "Acme", "--admin", "root@acme.example")
    with pytest.raises(CommandError):
        call_command("createuser", "--org", "Acme", "x@acme.example", "--role", "god")


def test_without_password_or_terminal_it_says_what_to_do(db, monkeypatch):
    monkeypatch.delenv("HAVEN_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    with pytest.raises(CommandError, match="Set HAVEN_PASSWORD"):
        call_command("createorg", "Acme", "--admin", "root@acme.example")
    assert not Organization.objects.filter(name="Acme").exists()


def test_a_weak_password_is_refused(db, monkeypatch):
    monkeypatch.setenv("HAVEN_PASSWORD", "123")
    with pytest.raises(CommandError, match="Password refused"):
        call_command("createorg", "Acme", "--admin", "root@acme.example")


def test_emails_are_unique_case_insensitively(alice):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="ALICE@a.example", organization=alice.organization)
