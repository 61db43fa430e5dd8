"""GET /api/v1/public/events: the organization's file events for SOAR tools, filtered, cursor-paginated."""
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.api_clients import api_client_create
from tests.activity.factory import device_of, file_events_insert


def _client(org, scopes=("events:read",)):
    _, key = api_client_create(organization=org, name="soar", scopes=list(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def events(alice, mallory):
    now = timezone.now()
    file_events_insert(device=device_of(alice, "alice-laptop"), events=[
        {"path": f"/media/usb/{i}.txt", "vector": "removable_media", "occurred_at": now - timedelta(minutes=i)}
        for i in range(7)])
    file_events_insert(device=device_of(mallory, "m"), events=[{"path": "/home/m/x.txt"}])


def test_it_pages_through_the_orgs_events_only(org_a, events):
    client, seen, cursor = _client(org_a), [], None
    while True:
        response = client.get("/api/v1/public/events", {"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        seen += response.json()["results"]
        cursor = response.json()["next"]
        if cursor is None:
            break
    assert [e["path"] for e in seen] == [f"/media/usb/{i}.txt" for i in range(7)]
    assert seen[0]["user"] == "alice@a.example" and seen[0]["device"] == "alice-laptop"
    assert seen[0]["source"] == "agent" and seen[0]["vector"] == "removable_media"


def test_filters(org_a, events):
    client = _client(org_a)
    assert len(client.get("/api/v1/public/events", {"path": "usb/3"}).json()["results"]) == 1
    assert client.get("/api/v1/public/events", {"vector": "cloud_sync"}).json()["results"] == []


@pytest.mark.parametrize("query", [{"vector": "pigeon"}, {"sha256": "zz"}, {"cursor": "%%%"}, {"limit": 0},
                                   {"since": "tomorrow"}])
def test_bad_queries_are_400(org_a, events, query):
    response = _client(org_a).get("/api/v1/public/events", query)
    assert response.status_code == 400 and response.json()


def test_it_needs_the_scope(org_a):
    assert _client(org_a, scopes=("devices:read",)).get("/api/v1/public/events").status_code == 403
