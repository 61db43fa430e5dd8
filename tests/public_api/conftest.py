"""Fixtures for the public API: API clients (keys) of org A and org B, devices with archives."""
import pytest
from rest_framework.test import APIClient

from accounts.api_clients import SCOPES, api_client_create
from accounts.services import device_create
from archives.services import archive_for_device_ensure, backup_run_finish, backup_run_start


@pytest.fixture
def key_for():
    """key_for(org, scopes=..., created_by=...) -> (ApiClient, an APIClient sending its key)."""

    def _key_for(organization, scopes=SCOPES, created_by=None, name="integration"):
        client, raw = api_client_create(organization=organization, name=name, scopes=list(scopes),
                                        created_by=created_by)
        http = APIClient()
        http.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        http.key = raw
        return client, http

    return _key_for


@pytest.fixture
def full(key_for, org_a, alice):
    """Org A's client with every scope, acting for Alice (an administrator)."""
    return key_for(org_a, created_by=alice)


def device_with_archive(owner, name="laptop", runs=("completed",)):
    device = device_create(owner=owner, name=name, os_name="Linux", agent_version="1.0")
    archive = archive_for_device_ensure(device=device)
    for status in runs:
        run = backup_run_start(archive=archive)
        if status != "running":
            backup_run_finish(run=run, status=status, counters={"files_scanned": 3}, errors=[])
    return device, archive
