"""An administrator triages an alert in a real browser (acknowledge, note, resolve) and edits a
device's backup-policy exclusions; the live server stores each step."""
from accounts.services import device_create
from activity.alerts import alert_raise
from activity.models import Alert
from archives.policies import policy_effective
from archives.policy_models import BackupPolicy
from tests.e2e.browser.conftest import screenshot, sign_in


def test_an_administrator_triages_an_alert_and_edits_a_policy_exclusion(live_server_haven, page, alice, bob):
    server = live_server_haven.url
    laptop = device_create(owner=bob, name="bob-laptop", os_name="Linux 6.1", agent_version="1.0")
    alert, _ = alert_raise(organization=alice.organization, kind="stale_device", dedup_key=f"stale:{laptop.uuid}",
                           title="bob-laptop has not backed up for 9 days", severity="high", subject_user=bob,
                           device=laptop, detail={"days_since_backup": 9, "threshold_days": 7}, notify=False)

    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{server}/")
    assert page.inner_text("#nav-alerts .nav-count") == "1"
    assert "bob-laptop has not backed up" in page.inner_text("#dashboard-alerts")
    page.click("#nav-alerts")
    page.wait_for_url(f"{server}/alerts/")
    page.click("a:has-text('bob-laptop has not backed up')")
    page.wait_for_url(f"{server}/alerts/{alert.uuid}/")
    assert "Threshold days" in page.inner_text(".facts")

    page.click("button:has-text('Acknowledge')")
    page.wait_for_selector("text=Acknowledged.")
    assert page.inner_text("#alert-status") == "Acknowledged"
    page.fill("textarea[name=text]", "Bob is on leave; the laptop is in a drawer.")
    page.click("button:has-text('Add the note')")
    page.wait_for_selector("text=Note added.")
    assert "Bob is on leave" in page.inner_text("table.alert-history")
    page.click("button:has-text('Resolve')")
    page.wait_for_selector("text=Resolved.")
    screenshot(page, "alert_detail")
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED
    assert list(alert.entries.values_list("action", flat=True)) == ["raised", "status", "note", "status"]
    assert alert.entries.get(action="note").actor == alice

    page.goto(f"{server}/devices/{laptop.uuid}/")
    page.click(".page-head a:has-text('Backup policy')")
    page.wait_for_url(f"{server}/policies/devices/{laptop.uuid}/")
    page.uncheck("input[name=exclude__inherit]")
    page.fill("textarea[name=exclude]", "*.iso\n~/Downloads")
    page.fill("input[name=interval_seconds]", "soon")  # refused: nothing may be saved
    page.uncheck("input[name=interval_seconds__inherit]")
    page.click("button:has-text('Save')")
    assert "Not a duration" in page.inner_text("[data-field=interval_seconds]")
    assert not BackupPolicy.objects.filter(device=laptop).exists()
    page.check("input[name=interval_seconds__inherit]")
    page.click("button:has-text('Save')")
    page.wait_for_selector("text=Saved: exclude.")
    assert "this device" in page.inner_text("table.effective tr[data-field=exclude]")
    screenshot(page, "device_policy")
    assert BackupPolicy.objects.get(device=laptop).exclude == ["*.iso", "~/Downloads"]
    assert {"*.iso", "~/Downloads", "node_modules"} <= set(policy_effective(device=laptop)["exclude_effective"])
