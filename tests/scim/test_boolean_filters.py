"""`active eq true` finds the active users on PostgreSQL and on SQLite: booleans reach SQL as
booleans (they used to reach it as the string 'TRUE', which SQLite compares with 1 and matches
nothing), while a quoted "true" stays a string."""
import json
import subprocess

import pytest

from accounts.models import User
from console.scim.filters import UserFilterQuery
from tests.support import PYTHON, REPO, embedded_env

ACTIVE = ["on1@a.example", "on2@a.example"]
CASES = {
    "active eq true": ACTIVE,
    "active eq false": ["off@a.example"],
    "active ne true": ["off@a.example"],
    'active eq "True"': ACTIVE,  # Azure AD quotes booleans
    'active eq true and userName sw "on1"': ["on1@a.example"],
    'not (active eq false)': ACTIVE,
}


def _params(query: str) -> list:
    return UserFilterQuery.query_class(query, UserFilterQuery.table_name(), UserFilterQuery.attr_map).params


def test_booleans_are_sql_booleans_and_quoted_values_stay_strings():
    assert _params("active eq true") == [True]
    assert _params("active eq false") == [False]
    assert _params('active eq "true"') == [True]
    assert _params('displayName eq "true"') == ["true"]  # a person may well be called "true"
    assert _params('userName eq "false"') == ["false"]


@pytest.mark.parametrize("query", ["active eq null", 'active eq "yes"', "active co true", "active gt false",
                                   "displayName eq true", "userName eq false"])
def test_mistyped_comparisons_are_invalid_filters(alice, scim_a, query):
    response = scim_a.get("Users", filter=query)

    assert response.status_code == 400, response.content
    assert response.json()["scimType"] == "invalidFilter"


@pytest.fixture
def three_users(org_a, scim_a):
    for name, active in (("on1", True), ("on2", True), ("off", False)):
        assert scim_a.post("Users", {"userName": f"{name}@a.example", "active": active}).status_code == 201
    assert User.objects.filter(is_active=False).count() == 1


@pytest.mark.parametrize(("query", "expected"), CASES.items())
def test_boolean_filters_on_postgresql(three_users, scim_a, query, expected):
    response = scim_a.get("Users", filter=query)

    assert sorted(r["userName"] for r in response.json()["Resources"]) == expected


@pytest.mark.slow
def test_boolean_filters_on_sqlite(tmp_path):
    env = embedded_env(tmp_path / "var", DATABASE_URL=f"sqlite:///{tmp_path / 'haven.sqlite3'}",
                       DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run([PYTHON, "-m", "tests.scim.sqlite_probe", *CASES], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["vendor"] == "sqlite"
    assert report["results"] == CASES
