"""Fixed-window counters for rate limits, kept in one table every web process shares.

Each bump is one atomic UPDATE (`count = count + 1`), so concurrent guesses are all counted;
a window starts at the first bump and is not extended by later ones. Callers must not run these
inside a transaction that the refusal rolls back, or the count would go with it.
"""
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import LoginCounter

_SWEEP = 200  # expired rows removed whenever a new counter is created: the table stays small


def counter_bump(*, key: str, window: timedelta) -> int:
    """Add one to the counter and return its value in the current window."""
    for _ in range(5):
        now = timezone.now()
        live = LoginCounter.objects.filter(key=key, expires_at__gt=now)
        if live.update(count=F("count") + 1):
            return live.values_list("count", flat=True).first() or 1
        # An expired row restarts its window; of two racing restarts, the loser's filter no longer
        # matches (the winner moved expires_at) and it increments on its next pass.
        if LoginCounter.objects.filter(key=key, expires_at__lte=now).update(count=1, expires_at=now + window):
            return 1
        try:
            with transaction.atomic():
                LoginCounter.objects.create(key=key, count=1, expires_at=now + window)
        except IntegrityError:
            continue  # created by a concurrent request: increment it on the next pass
        stale = list(LoginCounter.objects.filter(expires_at__lt=now).values_list("pk", flat=True)[:_SWEEP])
        if stale:
            LoginCounter.objects.filter(pk__in=stale, expires_at__lt=now).delete()
        return 1
    raise RuntimeError(f"could not count {key!r}")


def counter_unbump(*, key: str) -> None:
    """Take back one bump (an attempt that turned out to be the rightful owner's)."""
    LoginCounter.objects.filter(key=key, expires_at__gt=timezone.now(), count__gt=0).update(count=F("count") - 1)


def counter_value(*, key: str) -> int:
    return (LoginCounter.objects.filter(key=key, expires_at__gt=timezone.now())
            .values_list("count", flat=True).first() or 0)


def marker_set(*, key: str, lifetime: timedelta) -> None:
    """Remember a fact (an address this account signed in from) until `lifetime` from now."""
    LoginCounter.objects.update_or_create(key=key, defaults={"count": 1, "expires_at": timezone.now() + lifetime})


def marker_present(*, key: str) -> bool:
    return counter_value(key=key) > 0
