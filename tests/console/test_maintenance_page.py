"""The maintenance page: an org admin sets the retention policy and overrides, previews a dry run,
and sees the org's recent maintenance runs — nobody else's, and nobody but admins."""
import pytest
from django.urls import reverse

from archives.maintenance_models import MaintenanceRun, RetentionPolicy
from archives.models import Archive
from archives.retention_policies import retention_for_archive, retention_for_org
from tests.conftest import PASSWORD

POLICY = {"keep_all_days": 3, "daily_days": 10, "weekly_weeks": 4, "monthly_months": 6, "deleted_days": 20}


@pytest.fixture
def browser(client, alice):
    assert client.login(username=alice.email, password=PASSWORD)
    return client


def test_an_admin_sets_the_policy_and_a_user_override(browser, alice, enrolled):
    enrolled(alice)
    response = browser.post(reverse("console:maintenance"), {"action": "policy", **POLICY})
    assert response.status_code == 302
    assert retention_for_org(alice.organization).as_dict() == POLICY
    response = browser.post(reverse("console:maintenance"), {"action": "override", "target": alice.email,
                                                              "daily_days": "1"})
    assert response.status_code == 302
    policy, source = retention_for_archive(Archive.objects.get(user=alice))
    assert source == "user" and policy.daily_days == 1 and policy.keep_all_days == 3
    page = browser.get(reverse("console:maintenance")).content.decode()
    assert alice.email in page and "Remove</button>" in page


def test_bad_numbers_and_unknown_targets_store_nothing(browser, alice, mallory):
    response = browser.post(reverse("console:maintenance"), {"action": "policy", **POLICY, "daily_days": "-2"})
    assert response.status_code == 200 and "greater than or equal to 0" in response.content.decode()
    response = browser.post(reverse("console:maintenance"), {"action": "override", "target": mallory.email,
                                                              "daily_days": "1"})
    assert response.status_code == 200 and "no user or device" in response.content.decode()
    assert not RetentionPolicy.objects.exists()


def test_the_preview_is_a_dry_run_and_runs_are_listed_for_this_org_only(browser, alice, mallory, enrolled):
    enrolled(alice)
    enrolled(mallory)
    other = Archive.objects.get(user=mallory)
    MaintenanceRun.objects.create(organization=mallory.organization, archive=other, detail="mallory-run-marker")
    response = browser.post(reverse("console:maintenance"), {"action": "preview"}, follow=True)
    page = response.content.decode()
    assert "would expire 0 version(s)" in page and "space freed (estimate)" in page
    assert "mallory-run-marker" not in page and "(dry run)" in page
    assert MaintenanceRun.objects.filter(organization=alice.organization, dry_run=True).count() == 1


def test_only_administrators_reach_it(client, bob):
    assert client.login(username=bob.email, password=PASSWORD)
    assert client.get(reverse("console:maintenance")).status_code == 403
    assert client.post(reverse("console:maintenance"), {"action": "policy", **POLICY}).status_code == 403
    assert not RetentionPolicy.objects.exists()
