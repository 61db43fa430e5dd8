"""An administrator makes an API client in a real browser, copies the key shown once, and the key
works against the public API of the same live server."""
import httpx

from tests.e2e.browser.conftest import screenshot, sign_in


def test_an_administrator_creates_an_api_client_and_its_key_works(live_server_haven, page, alice):
    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{live_server_haven.url}/")
    page.click("nav >> text=API clients")
    page.fill("input[name=name]", "SOAR playbooks")
    page.check("input[value='devices:read']")
    page.click("text=Create a client")
    key = page.inner_text("#api-key").strip()
    screenshot(page, "api_clients")
    answer = httpx.get(f"{live_server_haven.url}/api/v1/public/devices", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.json() == {"results": [], "next": None}
    page.goto(f"{live_server_haven.url}/api-clients/")
    assert key not in page.content() and "SOAR playbooks" in page.inner_text("table")
