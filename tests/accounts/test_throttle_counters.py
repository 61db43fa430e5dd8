"""Rate-limit counters count every concurrent attempt and keep the window of their first bump."""
import threading
from datetime import timedelta

from django.db import connection

from accounts.models import LoginCounter
from accounts.throttle import counter_bump, counter_value


def test_concurrent_bumps_are_all_counted(transactional_db):
    threads_count, per_thread = 8, 10
    barrier = threading.Barrier(threads_count)
    errors = []

    def guess():
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            for _ in range(per_thread):
                counter_bump(key="address:203.0.113.9", window=timedelta(minutes=15))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=guess) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert counter_value(key="address:203.0.113.9") == threads_count * per_thread
    connection.close()


def test_the_window_starts_at_the_first_bump_and_is_not_extended(db):
    counter_bump(key="k", window=timedelta(minutes=15))
    first_expiry = LoginCounter.objects.get(key="k").expires_at
    assert counter_bump(key="k", window=timedelta(minutes=15)) == 2
    assert LoginCounter.objects.get(key="k").expires_at == first_expiry


def test_an_expired_counter_starts_again_at_one(db):
    counter_bump(key="k", window=timedelta(minutes=15))
    counter_bump(key="k", window=timedelta(minutes=15))
    LoginCounter.objects.filter(key="k").update(expires_at=LoginCounter.objects.get(key="k").expires_at
                                                 - timedelta(hours=1))
    assert counter_value(key="k") == 0
    assert counter_bump(key="k", window=timedelta(minutes=15)) == 1
