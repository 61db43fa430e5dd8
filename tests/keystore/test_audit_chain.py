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
