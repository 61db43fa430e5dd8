"""The forensic search's "path contains" (activity/search.py PathContains): case-insensitive, with
LIKE's wildcards taken literally, and answered by the trigram index on PostgreSQL."""
import pytest
from django.db import connection

from activity.models import FileEvent
from activity.search import file_events_filtered
from tests.activity.factory import device_of, file_events_insert

PATHS = ["/home/alice/Dropbox/Q3 50%_off.xlsx", "/home/alice/Dropbox/Q3 500 off.xlsx", "/home/alice/docs/a\\b.txt",
         "/home/alice/docs/plan.pdf"]


@pytest.fixture
def events(alice, mallory):
    file_events_insert(device=device_of(alice), events=[{"path": path} for path in PATHS])
    file_events_insert(device=device_of(mallory), events=[{"path": "/home/mallory/Dropbox/Q3 50%_off.xlsx"}])


def _found(admin, text):
    return sorted(event.path for event in file_events_filtered(admin, {"path": text}))


@pytest.fixture
def admin(alice):
    alice.role = "org_admin"
    alice.save(update_fields=["role"])
    return alice


def test_path_contains_ignores_case_and_stays_in_the_organization(events, admin):
    assert _found(admin, "DROPBOX/q3") == sorted(PATHS[:2])


def test_like_wildcards_in_the_text_are_literal(events, admin):
    assert _found(admin, "50%_") == [PATHS[0]]
    assert _found(admin, "a\\b") == [PATHS[2]]
    assert _found(admin, "0_o") == []  # as a wildcard, "_" would match "500 off"
    assert _found(admin, "0%o") == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigram index is PostgreSQL's")
def test_path_contains_can_use_the_trigram_index(events, admin):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # five rows: a scan would otherwise win
        sql, params = FileEvent.objects.filter(path__trgm_icontains="dropbox").query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "fileevent_path_trgm_ilike" in plan, plan
    assert FileEvent.objects.count() == 5
