"""Run by test_boolean_filters.py in a subprocess with DATABASE_URL=sqlite:///...: migrates a fresh
SQLite database, provisions two active users and one inactive through SCIM, and prints which
userNames each filter given on the command line returns (JSON). The suite itself runs on
PostgreSQL; this is how the same filters are checked on Haven's default database."""
import json
import sys

import django


def main(filters: list[str]) -> None:
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from accounts.models import SamlSettings
    from accounts.services import organization_get_or_create, scim_token_issue

    assert connection.vendor == "sqlite", connection.vendor
    call_command("migrate", verbosity=0)
    org = organization_get_or_create(name="Org A")[0]
    SamlSettings.objects.update_or_create(organization=org, defaults={"verified_domains": "a.example"})
    scim = Client(HTTP_AUTHORIZATION=f"Bearer {scim_token_issue(organization=org)}", SERVER_NAME="localhost")
    for name, active in (("on1", True), ("on2", True), ("off", False)):
        response = scim.post("/scim/v2/Users", json.dumps({"userName": f"{name}@a.example", "active": active}),
                             content_type="application/scim+json")
        assert response.status_code == 201, response.content
    results = {}
    for query in filters:
        response = scim.get("/scim/v2/Users", {"filter": query})
        results[query] = (sorted(r["userName"] for r in response.json()["Resources"])
                          if response.status_code == 200 else response.status_code)
    print(json.dumps({"vendor": connection.vendor, "results": results}))


if __name__ == "__main__":
    main(sys.argv[1:])
