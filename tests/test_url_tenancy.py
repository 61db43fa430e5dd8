"""Every console and API URL, called with ids of another organization's (and another user's)
objects, answers 404 — the same as for ids that do not exist.

The table below must name every URL pattern: a new pattern without an entry fails
`test_every_url_pattern_is_in_the_table`, so nobody adds a view without deciding how its ids are
scoped. Mallory is an administrator of Org B; Bob is a plain user of Org A; the objects belong to
Alice (administrator of Org A).
"""
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

# route → [(method, {parameter: object name}, who)]; `who` is "mallory", "bob" or "both".
# Object names: device, archive, run, job, group, user (Alice's own objects; "bob_user" for Bob's
# account as seen by another org's admin).
WITH_IDS = {
    # console
    "users/<str:user_id>/": [("get", {"user_id": "user"}, "mallory")],
    "users/<str:user_id>/<str:action>": [("post", {"user_id": "user", "action": "deactivate"}, "mallory")],
    "groups/<str:group_id>/role": [("post", {"group_id": "group"}, "mallory")],
    "devices/<uuid:device_id>/": [("get", {"device_id": "device"}, "both")],
    "devices/<uuid:device_id>/backup-now": [("post", {"device_id": "device"}, "both")],
    "devices/<uuid:device_id>/authorization/<str:action>": [
        ("post", {"device_id": "device", "action": "deauthorize"}, "both")],
    "restores/archives/<str:archive_id>/": [("get", {"archive_id": "archive"}, "both")],
    "restores/archives/<str:archive_id>/versions": [("get", {"archive_id": "archive"}, "both")],
    "restores/archives/<str:archive_id>/restore": [("post", {"archive_id": "archive"}, "both")],
    "restores/archives/<str:archive_id>/push": [("get", {"archive_id": "archive"}, "both"),
                                                ("post", {"archive_id": "archive"}, "both")],
    "restores/<str:job_id>/": [("get", {"job_id": "job"}, "both"), ("get", {"job_id": "push_job"}, "both")],
    "restores/<str:job_id>/download": [("get", {"job_id": "job"}, "both")],
    "restores/<str:job_id>/<str:decision>": [("post", {"job_id": "job", "decision": "approve"}, "both")],
    "alerts/<str:alert_id>/": [("get", {"alert_id": "alert"}, "both")],
    "alerts/<str:alert_id>/<str:action>": [("post", {"alert_id": "alert", "action": "resolve"}, "both")],
    "policies/groups/<str:group_id>/": [("get", {"group_id": "group"}, "both"), ("post", {"group_id": "group"}, "both")],
    "policies/devices/<uuid:device_id>/": [("get", {"device_id": "device"}, "both"),
                                           ("post", {"device_id": "device"}, "both")],
    "activity/watch-list/<str:user_id>/remove": [("post", {"user_id": "user"}, "both")],
    "activity/export/<str:target_id>/remove": [("post", {"target_id": "export_target"}, "both")],
    "activity/dead-letters/<str:delivery_id>/retry": [("post", {"delivery_id": "dead_letter"}, "both")],
    "devices/<uuid:device_id>/protection": [("get", {"device_id": "device"}, "both")],
    "devices/<uuid:device_id>/verify": [("post", {"device_id": "device"}, "both")],
    "devices/<uuid:device_id>/freeze/release": [("post", {"device_id": "device"}, "both")],
    "safeguards/holds/<str:user_id>/<str:action>": [("post", {"user_id": "user", "action": "place"}, "mallory")],
    # agent API (device tokens): Mallory's device, and Bob's device, name Alice's archive
    "api/v1/archives/<str:archive_id>": [("get", {"archive_id": "archive"}, "both")],
    "api/v1/archives/<str:archive_id>/runs": [("post", {"archive_id": "archive"}, "both")],
    "api/v1/archives/<str:archive_id>/runs/<str:run_id>/finish": [
        ("post", {"archive_id": "archive", "run_id": "run"}, "both")],
    "api/v1/archives/<str:archive_id>/blocks": [("post", {"archive_id": "archive"}, "both")],
    "api/v1/archives/<str:archive_id>/blocks/missing": [("post", {"archive_id": "archive"}, "both")],
    "api/v1/archives/<str:archive_id>/blocks/fetch": [("post", {"archive_id": "archive"}, "both")],
    "api/v1/archives/<str:archive_id>/versions": [("get", {"archive_id": "archive"}, "both")],
    # push restores: only the target device (Alice's laptop) sees the job; Bob's and Mallory's get 404
    "api/v1/devices/me/push-restores/<str:job_id>": [("get", {"job_id": "push_job"}, "both")],
    "api/v1/devices/me/push-restores/<str:job_id>/accept": [("post", {"job_id": "push_job"}, "both")],
    "api/v1/devices/me/push-restores/<str:job_id>/stream": [("get", {"job_id": "push_job"}, "both")],
    "api/v1/devices/me/push-restores/<str:job_id>/progress": [("post", {"job_id": "push_job"}, "both")],
    "api/v1/devices/me/push-restores/<str:job_id>/result": [("post", {"job_id": "push_job"}, "both")],
    "api/v1/archives/<str:archive_id>/heal": [("get", {"archive_id": "archive"}, "both")],
    # public API (an API key of Org B)
    "api/v1/public/archives/<str:archive_id>/runs": [("get", {"archive_id": "archive"}, "mallory")],
    "api/v1/public/restores/<str:restore_id>": [("get", {"restore_id": "job"}, "mallory")],
    "api/v1/public/restores/<str:restore_id>/download": [("get", {"restore_id": "job"}, "mallory")],
    "api/v1/public/alerts/<str:alert_id>": [("get", {"alert_id": "alert"}, "mallory")],
    "api/v1/public/alerts/<str:alert_id>/status": [("post", {"alert_id": "alert"}, "mallory")],
    "api/v1/public/alerts/<str:alert_id>/assign": [("post", {"alert_id": "alert"}, "mallory")],
    "api/v1/public/alerts/<str:alert_id>/notes": [("post", {"alert_id": "alert"}, "mallory")],
}

# Patterns that take no object id: they act on the caller's own organization, device or account.
WITHOUT_IDS = {
    "", "login/", "logout/", "login/code/", "account/", "account/two-factor/", "users/", "users/new", "devices/",
    "keys/history/", "keystore/", "sso/", "provisioning/", "api-clients/", "devices/enroll/", "devices/export.csv",
    "devices/deauthorize", "restores/", "restores/archives/", "restores/settings/", "audit/", "alerts/", "policies/",
    "deployment/", "api/v1/enroll/deployment",
    "api/v1/enroll", "api/v1/device", "api/v1/devices/me/policy", "api/v1/devices/me/status", "api/v1/keys/mine",
    "api/v1/devices/me/push-restores",
    "api/v1/keys/escrow", "api/v1/keys/retrieve", "api/v1/archives", "api/v1/public/devices", "api/v1/public/audit",
    "api/v1/public/restores", "api/schema/", "saml/start/", "api/v1/public/alerts", "healthz", "metrics",
    "activity/", "activity/events.csv", "activity/rules/", "activity/watch-list/", "activity/export/",
    "api/v1/public/events", "api/v1/events",
    "safeguards/", "safeguards/holds/", "safeguards/quotas/", "maintenance/",
}

# Scoped elsewhere, with their own tests that call them with another organization's ids.
ELSEWHERE = {
    "scim/v2/": "tests/scim/test_tenancy.py (every SCIM URL with another org's token and ids)",
    "saml/<uuid:org_id>/": "tests/saml/test_saml_login.py (the org in the URL is the SP: another org's IdP "
                           "or user cannot sign in through it)",
    "admin/": "Haven operators only (superusers), not tenants",
}


def _routes(resolver=None, prefix=""):
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def test_every_url_pattern_is_in_the_table():
    unlisted = [route for route in _routes() if route not in WITH_IDS and route not in WITHOUT_IDS
                and not any(route.startswith(prefix) for prefix in ELSEWHERE)]
    assert not unlisted, f"add these URL patterns to tests/test_url_tenancy.py: {unlisted}"
    stale = [route for route in [*WITH_IDS, *WITHOUT_IDS] if route not in set(_routes())]
    assert not stale, f"tests/test_url_tenancy.py names patterns that no longer exist: {stale}"


@pytest.fixture
def objects(alice, bob, org_a, enrolled):
    from accounts.models import Group
    from activity.alerts import alert_raise
    from archives.models import Archive, BackupRun, PushRestore, RestoreJob

    enrolled(alice, "alice-laptop")
    archive = Archive.objects.select_related("device").get(user=alice)
    run = BackupRun.objects.create(archive=archive)
    job = RestoreJob.objects.create(organization=org_a, archive=archive, requested_by=alice, at=timezone.now())
    group = Group.objects.create(organization=org_a, name="engineering")
    alert, _ = alert_raise(organization=org_a, kind="stale_device", dedup_key="stale:1", title="stale",
                           device=archive.device, notify=False)
    from activity.export.targets import export_target_create
    from activity.models import ExportDelivery

    target, _ = export_target_create(organization=org_a, actor=alice, name="siem", kind="syslog", host="127.0.0.1",
                                     port=6514)
    dead = ExportDelivery.objects.create(target=target, subject="alert", records=[], status="dead",
                                         next_attempt_at=timezone.now())
    push_job = RestoreJob.objects.create(organization=org_a, archive=archive, requested_by=alice, at=timezone.now(),
                                         kind=RestoreJob.Kind.PUSH)
    PushRestore.objects.create(job=push_job, target_device=archive.device, target_path="/restored", mode="own_key")
    return {"device": archive.device.uuid, "archive": archive.uuid, "run": run.uuid, "job": job.uuid,
            "group": group.uuid, "user": alice.uuid, "alert": alert.uuid, "export_target": target.uuid,
            "dead_letter": dead.uuid, "push_job": push_job.uuid}


def _url(route: str, values: dict) -> str:
    path = route
    for name, value in values.items():
        for converter in ("str", "uuid"):
            path = path.replace(f"<{converter}:{name}>", str(value))
    return "/" + path


@pytest.fixture
def callers(mallory, bob, enrolled, client):
    """A logged-in browser session, a device token and (for Mallory) an API key, per person."""
    from accounts.api_clients import api_client_create
    from tests.conftest import PASSWORD

    people = {}
    for name, person in (("mallory", mallory), ("bob", bob)):
        session = type(client)()
        assert session.login(username=person.email, password=PASSWORD)
        device = enrolled(person, f"{name}-laptop")
        people[name] = {"session": session, "device": device}
    _, key = api_client_create(organization=mallory.organization, name="siem",
                               scopes=["devices:read", "archives:read", "restores:write", "audit:read",
                                       "alerts:read", "alerts:write"],
                               created_by=mallory)
    public = APIClient()
    public.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    people["mallory"]["public"] = public
    return people


def _caller(people: dict, who: str, route: str):
    if route.startswith("api/v1/public/"):
        return people[who]["public"]
    if route.startswith("api/"):
        return people[who]["device"]
    return people[who]["session"]


CASES = [(route, method, params, who) for route, entries in WITH_IDS.items() for method, params, whom in entries
         for who in (("mallory", "bob") if whom == "both" else (whom,))]


@pytest.mark.parametrize("route,method,params,who", CASES, ids=[f"{c[3]}:{c[1]} {c[0]}" for c in CASES])
def test_another_orgs_or_users_ids_are_404(route, method, params, who, objects, callers):
    caller = _caller(callers, who, route)
    values = {name: objects.get(source, source) for name, source in params.items()}
    body = {"data": {}, "format": "json"} if route.startswith("api/") and method == "post" else {}
    response = getattr(caller, method)(_url(route, values), **body)
    assert response.status_code == 404, (route, who, response.status_code, response.content[:300])
    # ...exactly as for an id that does not exist.
    absent = {name: (uuid.uuid4() if name.endswith("_id") else value) for name, value in values.items()}
    missing = getattr(caller, method)(_url(route, absent), **body)
    assert missing.status_code == 404, (route, who, "absent id", missing.status_code)
