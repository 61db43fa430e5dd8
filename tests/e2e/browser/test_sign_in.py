"""A person signs in to the console in a real browser."""
from tests.e2e.browser.conftest import screenshot, sign_in


def test_an_administrator_signs_in_and_sees_the_dashboard(live_server_haven, page, alice):
    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{live_server_haven.url}/")
    assert alice.email in page.inner_text("header")
    assert page.evaluate("typeof htmx") == "object", "the console loads htmx from its own static files"
    screenshot(page, "dashboard")


def test_a_wrong_password_stays_on_the_login_page(live_server_haven, page, alice):
    sign_in(page, live_server_haven, alice, password="not the password")
    assert page.url.startswith(f"{live_server_haven.url}/login/")
    assert "Devices" not in page.inner_text("body")
