"""The key-access log: hash-chained, anchored in the keystore; edits, deletions and truncation
are detected by `manage.py keystore verify-audit`."""
import pytest
from django.core.management import CommandError, call_command

from keystore.models import AuditChainHead, KeyAccess
from keystore.services import key_access_record


@pytest.fixture
def history(vault, alice):
    for outcome in ("started", "succeeded", "started", "succeeded", "started"):
        key_access_record(subject=alice, purpose="device_retrieval", outcome=outcome, actor=alice,
                          actor_label="test", job="job-1")
    return list(KeyAccess.objects.order_by("seq"))


def _verify():
    call_command("keystore", "verify-audit")


def test_an_intact_log_verifies(history, capsys):
    _verify()
    assert "5 record(s), 5 anchor(s)" in capsys.readouterr().out
    assert [a.seq for a in history] == [1, 2, 3, 4, 5]
    assert all(a.prev_hash == b.hash for a, b in zip(history[1:], history))


def test_an_edited_record_is_detected(history, capsys):
    KeyAccess.objects.filter(seq=2).update(actor_label="someone innocent")
    with pytest.raises(CommandError):
        _verify()
    assert "record 2 was altered" in capsys.readouterr().err


def test_a_rewritten_chain_is_detected_by_the_anchors(history, capsys):
    """An attacker who recomputes every hash after an edit still differs from the anchors."""
    from keystore.services import _hashed_fields, _record_hash

    previous = "0" * 64
    for access in KeyAccess.objects.order_by("seq"):
        if access.seq == 3:
            access.purpose = "escrow"
        access.prev_hash = previous
        access.hash = _record_hash(previous, _hashed_fields(access))
        access.save()
        previous = access.hash
    with pytest.raises(CommandError):
        _verify()
    assert "record 3 differs from its anchor" in capsys.readouterr().err


def test_a_deleted_record_is_detected(history, capsys):
    KeyAccess.objects.filter(seq=3).delete()
    with pytest.raises(CommandError):
        _verify()
    err = capsys.readouterr().err
    assert "records 3..3 are missing" in err and "record 4 does not follow" in err


def test_a_truncated_log_is_detected(history, capsys):
    KeyAccess.objects.filter(seq__gte=4).delete()
    AuditChainHead.objects.update(seq=3, hash=history[2].hash)
    with pytest.raises(CommandError):
        _verify()
    assert "record 5 is anchored in the keystore but missing" in capsys.readouterr().err


def test_keystore_status_reports_unsealed(vault, capsys):
    call_command("keystore", "status")
    assert "unsealed" in capsys.readouterr().out


def test_records_whose_anchor_failed_are_covered_by_a_later_anchor(vault, alice, settings, capsys):
    from keystore.vault import vault_client_reset

    key_access_record(subject=alice, purpose="escrow", outcome="started", actor=alice, actor_label="a")
    real_addr = settings.VAULT_ADDR
    settings.VAULT_ADDR = "http://127.0.0.1:9"  # the keystore is away: this record is not anchored
    vault_client_reset()
    key_access_record(subject=alice, purpose="escrow", outcome="failed", actor=alice, actor_label="b")
    settings.VAULT_ADDR = real_addr
    vault_client_reset()
    _verify()
    assert "newest 1 record(s) are not anchored" in capsys.readouterr().out
    key_access_record(subject=alice, purpose="escrow", outcome="started", actor=alice, actor_label="c")
    KeyAccess.objects.filter(seq=2).update(detail="rewritten")  # the unanchored record, edited
    with pytest.raises(CommandError):
        _verify()


def test_each_organization_has_its_own_chain(vault, alice, mallory, capsys):
    for user in (alice, mallory, alice):
        key_access_record(subject=user, purpose="escrow", outcome="started", actor=user, actor_label="t")
    chains = {}
    for access in KeyAccess.objects.order_by("id"):
        chains.setdefault(access.chain, []).append(access.seq)
    assert chains == {str(alice.organization.uuid): [1, 2], str(mallory.organization.uuid): [1]}
    _verify()
    assert "3 record(s), 3 anchor(s) in 2 chain(s)" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_organizations_do_not_wait_on_each_other(vault, alice, mallory):
    """While org A's chain head is locked (an append in flight), org B's key access completes."""
    import threading

    from django.db import connection, transaction

    key_access_record(subject=alice, purpose="escrow", outcome="started", actor=alice, actor_label="t")
    locked, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold_org_a_head():
        try:
            with transaction.atomic():
                AuditChainHead.objects.select_for_update().get(chain=str(alice.organization.uuid))
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    def record_for_org_b():
        try:
            key_access_record(subject=mallory, purpose="escrow", outcome="started", actor=mallory, actor_label="t")
            done.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold_org_a_head)
    holder.start()
    assert locked.wait(10)
    writer = threading.Thread(target=record_for_org_b)
    writer.start()
    finished_while_a_was_locked = done.wait(10)
    release.set()
    holder.join()
    writer.join()
    assert finished_while_a_was_locked


def test_a_record_moved_to_another_organizations_chain_is_detected(vault, alice, mallory, capsys):
    key_access_record(subject=alice, purpose="escrow", outcome="started", actor=alice, actor_label="t")
    moved = key_access_record(subject=mallory, purpose="escrow", outcome="started", actor=mallory, actor_label="t")
    KeyAccess.objects.filter(pk=moved.pk).update(chain=str(alice.organization.uuid), seq=2)
    with pytest.raises(CommandError):
        _verify()
    err = capsys.readouterr().err
    assert "belongs to another organization's chain" in err
    assert f"chain {mallory.organization.uuid}: record 1 is anchored in the keystore but missing" in err


def test_a_chain_whose_records_are_all_deleted_is_detected(vault, alice, mallory, capsys):
    key_access_record(subject=alice, purpose="escrow", outcome="started", actor=alice, actor_label="t")
    key_access_record(subject=mallory, purpose="escrow", outcome="started", actor=mallory, actor_label="t")
    KeyAccess.objects.filter(organization=mallory.organization).delete()
    with pytest.raises(CommandError):
        _verify()
    assert "record 1 is anchored in the keystore but missing" in capsys.readouterr().err


def test_records_of_the_old_single_chain_still_verify(vault, alice, mallory, capsys):
    """Rows written before chains were per organization (chain 'global', anchors at prefix/seq)."""
    from keystore.audit import _append
    from keystore.models import LEGACY_CHAIN

    for user in (alice, mallory):
        _append(LEGACY_CHAIN, subject=user, purpose="escrow", outcome="started", actor=user, actor_label="old",
                job="", detail="")
    key_access_record(subject=alice, purpose="escrow", outcome="started", actor=alice, actor_label="new")
    _verify()
    assert "3 record(s), 3 anchor(s) in 2 chain(s)" in capsys.readouterr().out
    KeyAccess.objects.filter(chain=LEGACY_CHAIN, seq=2).update(detail="edited")
    with pytest.raises(CommandError):
        _verify()
    assert "chain global: record 2 was altered" in capsys.readouterr().err
