"""Deployment-token uses racing for real: threads with their own PostgreSQL connections. The row
lock holds the count: however many enroll at once, no more than `max_uses` devices come out."""
import threading

import pytest
from django.db import connections

from accounts.deployment import DeploymentTokenRefused, deployment_token_create
from accounts.models import AuditEvent, DeploymentToken, Device
from archives.services import device_enroll_by_token

pytestmark = pytest.mark.django_db(transaction=True)

ATTEMPTS = 8
MAX_USES = 3


def test_concurrent_uses_never_exceed_max_uses(alice, bob, org_a):
    token, raw = deployment_token_create(organization=org_a, max_uses=MAX_USES, actor=alice)
    results: dict[int, str] = {}
    barrier = threading.Barrier(ATTEMPTS)

    def run(index):
        try:
            barrier.wait(timeout=30)
            device_enroll_by_token(raw_token=raw, email=bob.email, device_name=f"laptop-{index}", os_name="Linux",
                                   agent_version="t", address=f"10.0.0.{index}")
            results[index] = "enrolled"
        except DeploymentTokenRefused as refused:
            results[index] = refused.code
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            results[index] = f"error: {error!r}"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results.values()) == sorted(["enrolled"] * MAX_USES
                                              + ["deployment_token_exhausted"] * (ATTEMPTS - MAX_USES)), results
    assert Device.objects.count() == MAX_USES
    assert DeploymentToken.objects.get(pk=token.pk).use_count == MAX_USES
    assert AuditEvent.objects.filter(action="deployment_token.use").count() == MAX_USES
