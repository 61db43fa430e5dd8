"""Escrows racing for real: threads with their own PostgreSQL connections against the real OpenBao.

Whatever the interleaving, exactly one device wins, the server tells it so with its own key_id,
and the row and the keystore name the same key (no device ever backs up under a key the
keystore does not hold).
"""
import base64
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from accounts.services import device_create
from formats.keys import generate_user_key, key_id_for
from keystore.models import KeyAccess, UserKey
from keystore.services import KeyConflict, key_escrow, key_path

pytestmark = pytest.mark.django_db(transaction=True)

DEVICES = 4
ROUNDS = 8


def _race(user, devices, keys) -> dict[int, str]:
    """Run one escrow per device at the same instant; each thread has its own DB connection."""
    results: dict[int, str] = {}
    barrier = threading.Barrier(len(devices))

    def run(index):
        try:
            barrier.wait(timeout=30)
            row = key_escrow(user=user, key=keys[index], key_id=key_id_for(keys[index]), device=devices[index])
            results[index] = row.key_id
        except KeyConflict:
            results[index] = "conflict"
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            results[index] = f"error: {error!r}"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(devices))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _assert_one_consistent_winner(vault, user, keys, results):
    assert len(results) == len(keys) and not [r for r in results.values() if r.startswith("error")], results
    winners = [index for index, answer in results.items() if answer != "conflict"]
    assert len(winners) == 1, results
    winner = winners[0]
    assert results[winner] == key_id_for(keys[winner]), "the server answered the winner with another key_id"
    row = UserKey.objects.get(user=user)
    stored = vault["client"].secrets.kv.v1.read_secret(path=key_path(user), mount_point="secret")["data"]
    assert base64.b64decode(stored["key"]) == keys[winner]
    assert (row.state, row.key_id) == (UserKey.State.ESCROWED, key_id_for(keys[winner]))


@pytest.mark.parametrize("abandoned", [False, True], ids=["fresh", "abandoned-escrow-taken-over"])
def test_concurrent_escrows_of_one_user_leave_one_key_in_the_row_and_the_keystore(vault, org_a, abandoned):
    from accounts.services import user_ensure

    for round_ in range(ROUNDS):
        user = user_ensure(organization=org_a, email=f"racer{round_}@a.example", role="user", password=None).user
        devices = [device_create(owner=user, name=f"laptop-{i}", os_name="linux", agent_version="t")
                   for i in range(DEVICES)]
        if abandoned:
            # A device died after creating the row, before the keystore write, eleven minutes ago.
            UserKey.objects.create(organization=org_a, user=user, key_id=key_id_for(generate_user_key()))
            UserKey.objects.filter(user=user).update(created_at=timezone.now() - timedelta(minutes=11))
        keys = [generate_user_key() for _ in devices]
        results = _race(user, devices, keys)
        _assert_one_consistent_winner(vault, user, keys, results)
        if abandoned:
            takeovers = KeyAccess.objects.filter(subject=user, detail__contains="abandoned escrow")
            assert takeovers.filter(outcome="started").count() == 1, "exactly one device takes it over"
