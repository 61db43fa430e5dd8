"""Keystore high availability against a real three-node OpenBao raft cluster: killing the active
node in the middle of escrows and key retrievals makes the calls move to another node and succeed,
and the key-access chain still verifies."""
import threading
import time

import hvac
import pytest

from accounts.services import device_create, user_ensure
from formats.keys import generate_user_key, key_id_for
from keystore.audit import key_access_verify
from keystore.services import key_escrow, key_path, key_retrieve
from keystore.vault import kv_read, vault_address, vault_client_reset
from tests.keystore.raft_cluster import start_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("raft"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_cluster(cluster, settings):
    import uuid

    leader = cluster.active()
    # The leader listed last: Haven must find it (standbys may answer reads from a lagging copy).
    ordered = [node for node in cluster.nodes if node is not leader] + [leader]
    settings.VAULT_ADDR = ",".join(node.url for node in ordered)
    settings.VAULT_TOKEN = cluster.app_token
    settings.HAVEN_KEYSTORE_FAILOVER_SECONDS = 60
    settings.HAVEN_AUDIT_ANCHOR_PREFIX = f"haven-audit/ha-{uuid.uuid4().hex[:12]}"
    vault_client_reset()
    yield leader
    vault_client_reset()


def _people(org, count):
    people = []
    for index in range(count):
        user = user_ensure(organization=org, email=f"ha{index}@a.example", role="user", password=None).user
        people.append((user, device_create(owner=user, name=f"laptop-{index}", os_name="linux", agent_version="t"),
                       generate_user_key()))
    return people


def test_killing_the_active_node_mid_escrow_and_retrieval_loses_no_call(cluster, on_cluster, org_a, alice):
    leader = on_cluster
    kv_read("haven/nothing")  # the first call picks the node
    assert vault_address() == leader.url
    people = _people(org_a, 12)
    for user, device, key in people[:3]:
        key_escrow(user=user, key=key, key_id=key_id_for(key), device=device)
    killer = threading.Timer(0.3, leader.kill)
    killer.start()
    durations, escrowed = [], people[:3]
    try:
        for user, device, key in people[3:]:
            started = time.monotonic()
            key_escrow(user=user, key=key, key_id=key_id_for(key), device=device)
            escrowed.append((user, device, key))
            for other, _device, other_key in escrowed:
                assert key_retrieve(user=other, purpose="web_restore", actor=alice, actor_label="ha-test") == other_key
            durations.append(time.monotonic() - started)
    finally:
        killer.join()
    assert leader.process.poll() is not None, "the leader was killed during the run"
    assert vault_address() == cluster.active().url, "Haven moved to the new active node"
    assert max(durations) > 0.5, "one call rode out the election (else the kill came too late to test anything)"
    result = key_access_verify()
    assert result.ok, result.problems
    assert result.unanchored_tail == 0 and result.records == result.anchors
    # The killed node comes back, rejoins as a standby, and serves again.
    cluster.restart(leader)
    new_leader = cluster.active()
    assert new_leader is not leader
    for user, _device, key in people:
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="ha-test") == key
    # and what the restarted node serves itself (as a standby, forwarding) is the same data
    assert leader.client(cluster.app_token).secrets.kv.v1.read_secret(
        path=key_path(people[0][0]), mount_point="secret")["data"]["key_id"] == key_id_for(people[0][2])


def test_refused_credentials_fail_at_once_on_every_node(cluster, on_cluster, settings):
    """Only node trouble moves to another node: a wrong token is Haven's problem and is not retried."""
    settings.VAULT_TOKEN = "not-a-token"
    vault_client_reset()
    started = time.monotonic()
    with pytest.raises(hvac.exceptions.Forbidden):  # OpenBao answers an unknown token with 403
        kv_read("haven/nothing")
    assert time.monotonic() - started < 5
