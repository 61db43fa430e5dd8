"""The audit log page (issue 9 item 5): administrative actions, sign-ins, restores and key accesses
in one time-ordered view, filtered and paginated in the database, exported as CSV; admins only."""
import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import audit_record
from keystore.models import KeyAccess
from tests.console.restore_fixtures import *  # noqa: F403 - the shared fixtures

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True)
def people(alice, bob, mallory, operator, analyst):
    """The named people, created before each test's own events (their user.create rows removed)."""
    AuditEvent.objects.all().delete()


@pytest.fixture
def signed_in(browser_for):
    """Signed-in clients whose own sign-in (a `login.success` row since sign-ins are audited) is not
    among the events each test lays out."""
    def _browser(user, **kwargs):
        client = browser_for(user, **kwargs)
        AuditEvent.objects.filter(action="login.success", actor=user).delete()
        return client

    return _browser


def _event(org, *, action, minutes_ago, actor=None, label=None, target_type="user", target_uuid=None):
    event = audit_record(organization=org, actor=actor, actor_label=label, action=action, target_type=target_type,
                         target_uuid=target_uuid)
    AuditEvent.objects.filter(pk=event.pk).update(occurred_at=NOW - timedelta(minutes=minutes_ago))
    return event


def _access(subject, *, minutes_ago, seq, purpose="web_restore", outcome="succeeded", actor_label="", job=""):
    """A key-access row as the keystore writes it (the page only reads them; the chain is tested in
    tests/keystore)."""
    return KeyAccess.objects.create(seq=seq, organization=subject.organization, subject=subject,
                                    actor_label=actor_label or subject.email, purpose=purpose, job=job,
                                    outcome=outcome, occurred_at=NOW - timedelta(minutes=minutes_ago),
                                    prev_hash=f"{seq - 1:064d}", hash=f"{seq:064d}")


def _rows(html: str) -> list[str]:
    body = html.split('<table class="audit">', 1)[1].split("</table>", 1)[0]
    return [row for row in body.split("<tr>")[2:]]


def test_one_time_ordered_view_of_every_kind_of_event(signed_in, alice, bob, mallory):
    _event(alice.organization, action="restore.request", minutes_ago=30, actor=alice, target_type="restore_job")
    _access(bob, minutes_ago=20, seq=1, actor_label="alice@a.example (web restore)", job="job-1")
    _event(alice.organization, action="login.failure", minutes_ago=10, label="sign-in from 10.0.0.9",
           target_uuid=bob.uuid)
    _event(mallory.organization, action="device.deauthorize", minutes_ago=5, actor=mallory)
    _access(mallory, minutes_ago=4, seq=2)
    rows = _rows(signed_in(alice).get(reverse("console:audit")).content.decode())
    assert len(rows) == 3
    assert "login.failure" in rows[0] and "sign-in from 10.0.0.9" in rows[0] and str(bob.uuid) in rows[0]
    assert "key.web_restore.succeeded" in rows[1] and "key of bob@a.example job-1" in rows[1]
    assert "restore.request" in rows[2] and alice.email in rows[2]


@pytest.mark.parametrize("query, expected", [
    ({"actor": "SIGN-IN"}, ["login.failure"]),
    ({"action": "key."}, ["key.web_restore.succeeded"]),
    ({"action": "restore"}, ["key.web_restore.succeeded", "restore.request"]),
    ({"target": "bob@a"}, ["key.web_restore.succeeded"]),
    ({"since": (NOW - timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M"),
      "until": (NOW - timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M")}, ["key.web_restore.succeeded"]),
])
def test_filters(signed_in, alice, bob, query, expected):
    _event(alice.organization, action="restore.request", minutes_ago=30, actor=alice, target_type="restore_job")
    _access(bob, minutes_ago=20, seq=1)
    _event(alice.organization, action="login.failure", minutes_ago=10, label="sign-in from 10.0.0.9")
    rows = _rows(signed_in(alice).get(reverse("console:audit"), query).content.decode())
    assert [next(a for a in ("login.failure", "key.web_restore.succeeded", "restore.request") if a in r)
            for r in rows] == expected


def test_bad_filter_input_is_a_400_not_a_500(signed_in, alice):
    response = signed_in(alice).get(reverse("console:audit"), {"since": "last tuesday", "page": "x"})
    assert response.status_code == 400 and "Enter a valid date/time" in response.content.decode()


def test_pages_are_cut_in_the_database_with_a_fixed_number_of_queries(signed_in, alice, bob,
                                                                      django_assert_max_num_queries):
    org = alice.organization
    AuditEvent.objects.bulk_create([AuditEvent(organization=org, actor_label=f"actor-{i}", action="user.update",
                                               target_type="user") for i in range(10_000)])
    AuditEvent.objects.update(occurred_at=NOW - timedelta(days=1))
    KeyAccess.objects.bulk_create([KeyAccess(seq=i + 1, organization=org, subject=bob, actor_label="k", purpose="escrow",
                                             outcome="succeeded", occurred_at=NOW, prev_hash="0", hash=f"{i:064d}")
                                   for i in range(30)])
    client = signed_in(alice)
    with django_assert_max_num_queries(8):
        first = client.get(reverse("console:audit")).content.decode()
    assert "10030 events" in first and "Page 1 of 201" in first
    rows = _rows(first)
    assert len(rows) == 50 and all("key.escrow" in r for r in rows[:30]) and "user.update" in rows[30]
    with django_assert_max_num_queries(8):
        last = client.get(reverse("console:audit"), {"page": 201}).content.decode()
    assert len(_rows(last)) == 30 and "Page 201 of 201" in last
    filtered = client.get(reverse("console:audit"), {"action": "user.update", "page": 2}).content.decode()
    assert "Page 2 of 200" in filtered and "action=user.update&amp;page=3" in filtered  # the filters stay


def test_csv_export_follows_the_filters(signed_in, alice, bob):
    _event(alice.organization, action="restore.request", minutes_ago=30, actor=alice, target_type="restore_job")
    _access(bob, minutes_ago=20, seq=1, job="job-1")
    response = signed_in(alice).get(reverse("console:audit"), {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0] == ["time (UTC)", "source", "actor", "action", "target", "detail"]
    assert [(r[1], r[3]) for r in table[1:]] == [("key", "key.web_restore.succeeded"), ("admin", "restore.request")]
    filtered = signed_in(alice).get(reverse("console:audit"), {"format": "csv", "action": "restore.req"})
    assert len(list(csv.reader(io.StringIO(b"".join(filtered.streaming_content).decode())))) == 2


def test_only_administrators_see_the_audit_log(signed_in, bob, operator, analyst, alice):
    for person in (bob, operator, analyst):
        client = signed_in(person)
        assert client.get(reverse("console:audit")).status_code == 403
        assert client.get(reverse("console:audit"), {"format": "csv"}).status_code == 403
        assert reverse("console:audit") not in client.get("/").content.decode()
    assert reverse("console:audit") in signed_in(alice).get("/").content.decode()
