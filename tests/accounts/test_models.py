"""accounts/models.py stands on its own: no import of the services built on it, even inside a function."""
import ast
from pathlib import Path

import accounts.models


def test_models_import_no_services_or_selectors():
    tree = ast.parse(Path(accounts.models.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and name.startswith(("accounts.services", "accounts.selectors"))}


def test_an_operator_superuser_lands_in_the_operators_organization(db):
    from accounts.models import Organization, User

    first = User.objects.create_superuser("op1@haven.example", "a long operator password")
    second = User.objects.create_superuser("op2@haven.example", "a long operator password")
    assert first.organization == second.organization == Organization.objects.get(slug="operators")
    assert first.is_staff and first.is_superuser and first.role == "org_admin"
