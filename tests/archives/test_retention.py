"""Retention keeps exactly what the policy says (docs/maintenance.md), over random histories."""
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from archives.retention import DEFAULT_RETENTION, Retention, VersionInfo, retention_keep

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = 86400


def _oracle_tier(policy: Retention, age_seconds: float) -> str:
    """The tiers restated in seconds, one after the other."""
    bounds = [("all", policy.keep_all_days * DAY), ("daily", policy.daily_days * DAY),
              ("weekly", policy.weekly_weeks * 7 * DAY), ("monthly", policy.monthly_months * 30 * DAY)]
    edge = 0
    for name, length in bounds:
        edge += length
        if age_seconds < edge:
            return name
    return "beyond"


def _oracle_bucket(tier: str, at: datetime):
    at = at.astimezone(UTC)
    return {"daily": (at.year, at.month, at.day), "weekly": tuple(at.isocalendar())[:2],
            "monthly": (at.year, at.month)}[tier]


def _oracle_kept(history: list[VersionInfo], policy: Retention, version: VersionInfo) -> bool:
    """The rules as quantified statements about one version."""
    same_path = [v for v in history if v.path_id == version.path_id]

    def later(a, b):
        return (a.committed_at, a.id) > (b.committed_at, b.id)

    newest = max(same_path, key=lambda v: (v.committed_at, v.id))
    if newest.deleted and (NOW - newest.committed_at) >= timedelta(days=policy.deleted_days):
        return False
    if version is newest:
        return True
    if newest.deleted and not version.deleted and not any(
            not v.deleted and later(v, version) for v in same_path):
        return True  # the file as it was just before its deletion
    tier = _oracle_tier(policy, (NOW - version.committed_at).total_seconds())
    if tier == "all":
        return True
    if tier == "beyond":
        return False
    bucket = _oracle_bucket(tier, version.committed_at)
    return not any(later(v, version) and _oracle_tier(policy, (NOW - v.committed_at).total_seconds()) == tier
                   and _oracle_bucket(tier, v.committed_at) == bucket for v in same_path)


policies = st.builds(Retention, keep_all_days=st.integers(0, 10), daily_days=st.integers(0, 40),
                     weekly_weeks=st.integers(0, 10), monthly_months=st.integers(0, 8),
                     deleted_days=st.integers(0, 60))
entries = st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.integers(-3600, 800 * DAY), st.booleans())


@st.composite
def histories(draw):
    rows = draw(st.lists(entries, max_size=40))
    return [VersionInfo(id=index, path_id=path, committed_at=NOW - timedelta(seconds=age), deleted=deleted)
            for index, (path, age, deleted) in enumerate(rows)]


@settings(max_examples=400, deadline=None)
@given(histories(), policies)
def test_retention_keeps_exactly_what_the_policy_says(history, policy):
    kept = retention_keep(history, policy, NOW)
    assert kept == {v.id for v in history if _oracle_kept(history, policy, v)}


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_the_newest_version_of_every_live_path_is_always_kept(history, policy):
    kept = retention_keep(history, policy, NOW)
    for path in {v.path_id for v in history}:
        newest = max((v for v in history if v.path_id == path), key=lambda v: (v.committed_at, v.id))
        if not newest.deleted:
            assert newest.id in kept


@settings(max_examples=200, deadline=None)
@given(histories(), policies)
def test_at_most_one_version_per_path_and_bucket_is_kept_outside_keep_all(history, policy):
    kept = retention_keep(history, policy, NOW)
    seen: dict = {}
    for v in history:
        tier = _oracle_tier(policy, (NOW - v.committed_at).total_seconds())
        if v.id in kept and tier not in ("all", "beyond"):
            seen.setdefault((v.path_id, tier, _oracle_bucket(tier, v.committed_at)), []).append(v)
    for key, members in seen.items():  # the newest of the path is the only extra one allowed
        assert len(members) <= 3, key


def test_the_defaults_are_the_documented_ones():
    assert DEFAULT_RETENTION.as_dict() == {"keep_all_days": 7, "daily_days": 90, "weekly_weeks": 52,
                                           "monthly_months": 12, "deleted_days": 30}


def test_a_year_of_hourly_versions_thins_to_the_schedule():
    history = [VersionInfo(i, "p", NOW - timedelta(hours=i), False) for i in range(24 * 400)]
    kept = retention_keep(history, Retention(keep_all_days=1, daily_days=6, weekly_weeks=3, monthly_months=2,
                                             deleted_days=1), NOW)
    assert all(i in kept for i in range(24))  # every version of the last day
    # then about 6 daily, 3 weekly, 2 monthly (+ bucket edges); nothing older than 1+6+21+60 days
    assert 24 + 9 <= len(kept) <= 24 + 16
    assert max(kept) < 24 * (1 + 6 + 21 + 60)


def test_a_file_deleted_long_ago_goes_entirely_one_deleted_recently_keeps_its_last_content():
    old = [VersionInfo(1, "gone", NOW - timedelta(days=50), False), VersionInfo(2, "gone", NOW - timedelta(days=40), True)]
    recent = [VersionInfo(3, "recent", NOW - timedelta(days=400), False),
              VersionInfo(4, "recent", NOW - timedelta(days=2), True)]
    kept = retention_keep(old + recent, Retention(deleted_days=30), NOW)
    assert kept == {3, 4}
