"""/healthz for load balancers and /metrics for Prometheus (config/monitoring.py)."""
import pytest
from django.test import Client

from keystore.vault import vault_client_reset


def test_healthz_answers_without_authentication(db):
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "checks": {"database": True}}


def test_deep_healthz_checks_the_keystore_and_the_broker(vault):
    response = Client().get("/healthz?deep=1")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": True, "keystore": True, "broker": True}


def test_deep_healthz_is_503_when_the_keystore_is_away(vault, settings):
    settings.VAULT_ADDR = "http://127.0.0.1:9"
    vault_client_reset()
    response = Client().get("/healthz?deep=1")
    assert response.status_code == 503 and response.json()["checks"]["keystore"] is False


def test_metrics_from_loopback_show_requests_devices_runs_and_keystore(vault, enrolled, alice):
    enrolled(alice)
    Client().get("/healthz")
    body = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'haven_http_requests_total{method="GET",status="2xx"}' in body
    assert 'haven_devices{authorized="true"} 1.0' in body
    assert 'haven_keystore_state{state="unsealed"} 1.0' in body
    assert 'haven_backup_runs_24h{status="failed"} 0.0' in body
    assert "haven_queue_depth" in body and "haven_stored_bytes" in body


@pytest.mark.parametrize("meta", [
    {"REMOTE_ADDR": "10.0.0.5"},
    {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},  # a proxy on this host forwarded it
    {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_REAL_IP": "203.0.113.9"},
])
def test_metrics_without_a_token_are_for_direct_loopback_only(db, meta):
    assert Client().get("/metrics", **meta).status_code == 404


def test_metrics_with_a_token_need_that_token(db, settings):
    settings.HAVEN_METRICS_TOKEN = "scrape-secret"
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", REMOTE_ADDR="10.0.0.5").status_code == 404
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret", REMOTE_ADDR="10.0.0.5")
    assert response.status_code == 200 and b"haven_devices" in response.content


def test_metrics_show_the_newest_good_keystore_snapshots_age(db):
    from datetime import timedelta

    from django.utils import timezone

    from keystore.models import KeystoreSnapshot

    def age() -> float:
        body = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        line = next(line for line in body.splitlines() if line.startswith("haven_keystore_snapshot_age_seconds "))
        return float(line.split()[1])

    assert age() == float("inf")  # none yet: an alert on "older than two intervals" fires
    now = timezone.now()
    for hours, state in ((30, "succeeded"), (5, "succeeded"), (1, "failed")):
        KeystoreSnapshot.objects.create(name=f"s{hours}", state=state, started_by="test", sha256="ab" * 32,
                                        storage_key=f"keystore-snapshots/s{hours}.snap",
                                        taken_at=now - timedelta(hours=hours))
    assert 5 * 3600 <= age() < 5 * 3600 + 60  # the newest good one; a newer failed one does not count
