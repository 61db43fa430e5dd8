"""The fleet pages in a real browser, with a real device: an agent enrolls and backs up against
the live server; the administrator sees it counted on the dashboard, opens its page and
deauthorizes it; the agent is refused from then on."""
from accounts.models import Device
from tests.e2e.browser.conftest import screenshot, sign_in
from tests.e2e.conftest import enroll_agent, run_agent


def test_an_admin_sees_a_backed_up_device_opens_it_and_deauthorizes_it(live_server_haven, page, alice, tmp_path):
    source = tmp_path / "home" / "docs"
    source.mkdir(parents=True)
    for index in range(5):
        (source / f"note-{index}.txt").write_text(f"note {index}\n" * 200)
    config = enroll_agent(live_server_haven, tmp_path / "agent", alice, "alice-laptop")
    run_agent(config, "backup", str(source))
    device = Device.objects.get(name="alice-laptop")

    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{live_server_haven.url}/")
    assert page.inner_text("[data-health=recent] .big") == "1", "the device backed up just now"
    assert page.inner_text("[data-health=never] .big") == "0"
    assert "alice@a.example" in page.inner_text("section:has(h2:has-text('Storage used'))")
    screenshot(page, "dashboard")

    page.click("[data-health=recent]")
    page.wait_for_url(f"{live_server_haven.url}/devices/?health=recent")
    page.fill("input[name=q]", "laptop")  # htmx swaps the table only
    page.wait_for_url("**/devices/?q=laptop*")
    page.click("a:has-text('alice-laptop')")
    page.wait_for_url(f"{live_server_haven.url}/devices/{device.uuid}/")
    assert page.inner_text("[data-files]") == "5"
    assert "Completed" in page.inner_text("table.runs")
    screenshot(page, "device")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Deauthorize')")
    page.wait_for_selector("text=Device alice-laptop deauthorized.")
    assert "Reauthorize" in page.inner_text(".page-head")
    device.refresh_from_db()
    assert not device.authorized
    refused = run_agent(config, "backup", str(source), check=False)
    assert refused.returncode != 0
