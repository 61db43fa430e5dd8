"""Keystore disaster recovery against a real one-node OpenBao raft cluster: snapshots taken by the
task, checked and stored on the pack storage, the newest N kept, and the documented restore
(docs/operations.md, "Keystore disaster recovery") bringing a wiped keystore back with every key
read byte-identical through Haven's normal retrieval path and the key-access chain intact.

One node is enough: a snapshot is the whole raft state whatever the cluster size, and each fresh
raft node costs seconds to initialize. The disaster test wipes the node and restores it to its
original self (same shares, same root token), so the other tests do not depend on running first.
"""
import hashlib
import json
import shutil
import uuid
from io import StringIO

import hvac
import pytest
from django.core.management import call_command

from accounts.models import AuditEvent
from accounts.services import device_create, user_ensure
from activity.models import Alert
from archives.storage import pack_storage
from formats.keys import generate_user_key, key_id_for
from keystore.audit import key_access_verify
from keystore.models import KeystoreSnapshot
from keystore.raft_snapshots import snapshot_check
from keystore.services import KeyNotEscrowed, key_escrow, key_retrieve
from keystore.snapshots import ALERT_FAILED, keystore_snapshot_take
from keystore.tasks import keystore_snapshot_take_task
from keystore.vault import vault_client_reset
from tests.keystore.raft_cluster import start_cluster
from tests.support import wait_until

pytestmark = pytest.mark.slow
State = KeystoreSnapshot.State


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("raft"), size=1)
    root = cluster.nodes[0].client(cluster.root_token)
    cluster.privileged_token = root.auth.token.create(policies=["haven-privileged"], no_default_policy=True,
                                                      ttl="24h")["auth"]["client_token"]
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_cluster(cluster, settings, tmp_path):
    settings.VAULT_ADDR = cluster.nodes[0].url
    settings.VAULT_TOKEN = cluster.app_token
    settings.VAULT_PRIVILEGED_TOKEN = cluster.privileged_token
    settings.HAVEN_AUDIT_ANCHOR_PREFIX = f"haven-audit/dr-{uuid.uuid4().hex[:12]}"
    settings.PACK_DIR = tmp_path / "packs"
    settings.HAVEN_KEYSTORE_SNAPSHOT_HOURS, settings.HAVEN_KEYSTORE_SNAPSHOT_KEEP = 24, 14
    vault_client_reset()
    yield cluster
    vault_client_reset()


def _escrowed_people(org, count, prefix):
    people = []
    for index in range(count):
        user = user_ensure(organization=org, email=f"{prefix}{index}@a.example", role="user", password=None).user
        device = device_create(owner=user, name=f"laptop-{index}", os_name="linux", agent_version="t")
        key = generate_user_key()
        key_escrow(user=user, key=key, key_id=key_id_for(key), device=device)
        people.append((user, key))
    return people


def test_a_snapshot_is_taken_checked_stored_once_and_audited(on_cluster, settings, org_a):
    _escrowed_people(org_a, 1, "snap")
    settings.VAULT_PRIVILEGED_TOKEN = on_cluster.app_token  # the escrow policy may not take snapshots
    failed = keystore_snapshot_take(started_by="test")
    assert failed.state == State.FAILED and "may not take snapshots" in failed.error
    assert Alert.objects.filter(organization=org_a, kind=ALERT_FAILED, status=Alert.Status.OPEN).exists()

    settings.VAULT_PRIVILEGED_TOKEN = on_cluster.privileged_token
    result = keystore_snapshot_take_task.apply(kwargs={"scheduled": False}).get()
    row = KeystoreSnapshot.objects.get(name=result["snapshot"])
    assert row.state == State.SUCCEEDED and row.node == on_cluster.nodes[0].url and row.cluster_id
    data = pack_storage().read_all(row.storage_key)
    assert row.storage_key == f"keystore-snapshots/{row.name}.snap"
    assert (len(data), hashlib.sha256(data).hexdigest()) == (row.size, row.sha256)
    assert snapshot_check(data)["Index"] == row.raft_index
    record = json.loads(pack_storage().meta_read(f"keystore-snapshots/{row.name}.json"))
    assert (record["sha256"], record["size"], record["cluster_id"]) == (row.sha256, row.size, row.cluster_id)
    audit = AuditEvent.objects.get(organization=org_a, action="keystore.snapshot")
    assert audit.detail["sha256"] == row.sha256 and audit.detail["snapshot"] == row.name
    assert not Alert.objects.filter(kind=ALERT_FAILED).exclude(status=Alert.Status.RESOLVED).exists()


def test_only_the_newest_n_snapshots_are_kept(on_cluster, settings, org_a):
    settings.HAVEN_KEYSTORE_SNAPSHOT_KEEP = 2
    rows = [keystore_snapshot_take(started_by="test") for _ in range(3)]
    assert [row.state for row in rows] == [State.SUCCEEDED] * 3
    storage = pack_storage()
    assert set(KeystoreSnapshot.objects.values_list("name", flat=True)) == {rows[1].name, rows[2].name}
    assert not storage.exists(rows[0].storage_key) and storage.meta_read(f"keystore-snapshots/{rows[0].name}.json") is None
    assert storage.exists(rows[1].storage_key) and storage.exists(rows[2].storage_key)


def _wipe(node, binary) -> dict:
    """The keystore is lost: its storage is gone, a new empty node takes its address and is
    initialized with NEW shares (what an operator does first), then unsealed with them."""
    node.kill()
    shutil.rmtree(node.directory)
    node.start(binary)
    fresh = node.client(timeout=300).sys.initialize(secret_shares=5, secret_threshold=3)
    for share in fresh["keys"][:3]:
        node.client().sys.submit_unseal_key(share)
    wait_until(lambda: _state(node) == "active", timeout=60, what="the new node to become active")
    return fresh


def _state(node) -> str:
    try:
        health = node.client().sys.read_health_status(method="GET", standby_ok=True, sealed_code=200, uninit_code=200)
    except Exception:  # noqa: BLE001 - not answering yet
        return "down"
    health = health.json() if hasattr(health, "json") else health
    return "sealed" if health.get("sealed") else "standby" if health.get("standby") else "active"


def test_a_wiped_keystore_comes_back_from_its_snapshot_with_every_key(on_cluster, org_a, org_b, alice, tmp_path):
    people = _escrowed_people(org_a, 3, "dr-a") + _escrowed_people(org_b, 2, "dr-b")
    for user, key in people:
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="dr-test") == key

    taken = keystore_snapshot_take_task.apply(kwargs={"scheduled": True}).get()  # what beat queues
    assert taken["state"] == State.SUCCEEDED
    late_user, _late_key = _escrowed_people(org_a, 1, "dr-late")[0]  # after the snapshot: not in it

    node = on_cluster.nodes[0]
    fresh = _wipe(node, on_cluster.binary)
    vault_client_reset()
    with pytest.raises(hvac.exceptions.Forbidden):  # the new keystore knows neither Haven's token nor its keys
        key_retrieve(user=people[0][0], purpose="web_restore", actor=alice, actor_label="dr-test")

    token_file = tmp_path / "new-root-token"
    token_file.write_text(fresh["root_token"])
    out = StringIO()
    call_command("keystoresnapshot", "restore", taken["snapshot"], "--token-file", str(token_file), "--yes", stdout=out)
    text = out.getvalue()
    assert f"restored snapshot {taken['snapshot']}" in text
    assert "SEALED: unseal every node with the ORIGINAL unseal shares" in text
    assert "1 key(s) were escrowed after this snapshot" in text and late_user.email in text
    assert _state(node) == "sealed"

    with pytest.raises(hvac.exceptions.InvalidRequest, match="failed to decrypt"):
        for share in fresh["keys"][:3]:  # the new shares no longer open it
            node.client().sys.submit_unseal_key(share)
    assert _state(node) == "sealed"
    node.client().sys.submit_unseal_key(reset=True)
    for share in on_cluster.shares[:3]:
        node.client().sys.submit_unseal_key(share)
    wait_until(lambda: _state(node) == "active", timeout=60, what="the restored node to become active")

    vault_client_reset()
    for user, key in people:  # Haven's own token and every key are back, through the normal path
        assert key_retrieve(user=user, purpose="web_restore", actor=alice, actor_label="dr-test") == key
    with pytest.raises(KeyNotEscrowed):
        key_retrieve(user=late_user, purpose="web_restore", actor=alice, actor_label="dr-test")
    result = key_access_verify()
    assert result.ok, result.problems
    assert result.unanchored_tail == 0
    assert AuditEvent.objects.filter(organization=org_b, action="keystore.snapshot_restore",
                                     detail__snapshot=taken["snapshot"]).exists()
    # and the next scheduled snapshot works on the restored keystore with the original tokens
    assert keystore_snapshot_take(started_by="test").state == State.SUCCEEDED


def test_the_embedded_keystore_is_raft_backed_and_snapshotted_with_its_own_privileged_token(settings, tmp_path,
                                                                                            org_a):
    from keystore.embedded import embedded_keystore_run
    from tests.support import free_port

    directory, port = tmp_path / "keystore", free_port()
    process = embedded_keystore_run(directory, port)
    try:
        settings.VAULT_ADDR, settings.VAULT_TOKEN, settings.VAULT_PRIVILEGED_TOKEN = "", "", ""
        settings.HAVEN_KEYSTORE_DIR, settings.HAVEN_KEYSTORE_PORT = directory, port
        settings.PACK_DIR = tmp_path / "packs"
        vault_client_reset()
        row = keystore_snapshot_take(started_by="test")
        assert row.state == State.SUCCEEDED, row.error
        assert row.node == f"http://127.0.0.1:{port}"
        assert snapshot_check(pack_storage().read_all(row.storage_key))["Index"] == row.raft_index
    finally:
        vault_client_reset()
        process.terminate()
        process.wait(timeout=20)
        process.haven_lock.release()
