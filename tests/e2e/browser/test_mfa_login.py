"""Two-factor sign-in in a real browser: password, then the authenticator code; and an
administrator whose organization requires it sets the app up before reaching anything else."""
import base64
import time

from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.console.totp import totp_code, wrong_code
from tests.e2e.browser.conftest import screenshot, sign_in


def test_an_administrator_signs_in_with_password_and_code(live_server_haven, page, alice, bob):
    device = TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{live_server_haven.url}/login/code/")
    assert "Devices" not in page.inner_text("header")  # not signed in before the code
    screenshot(page, "login_code")
    page.fill("input[name=code]", totp_code(device))
    page.click("button:has-text(\"Verify\")")
    page.wait_for_url(f"{live_server_haven.url}/")
    assert alice.email in page.inner_text("header")
    page.click("nav >> text=Users")
    page.wait_for_url(f"{live_server_haven.url}/users/")
    assert bob.email in page.inner_text("table.users")
    screenshot(page, "users")
    page.click(f"text={bob.email}")
    page.wait_for_url(f"{live_server_haven.url}/users/{bob.uuid}/")
    screenshot(page, "user")
    page.click("header >> text=Your account")
    page.wait_for_url(f"{live_server_haven.url}/account/")
    assert "On: password sign-ins ask for the code" in page.inner_text("#two-factor")
    screenshot(page, "account")


def test_a_wrong_code_keeps_the_browser_out(live_server_haven, page, alice):
    device = TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{live_server_haven.url}/login/code/")
    page.fill("input[name=code]", wrong_code(device))
    page.click("button:has-text(\"Verify\")")
    assert "not right" in page.inner_text("main")
    page.goto(f"{live_server_haven.url}/devices/")
    assert page.url.startswith(f"{live_server_haven.url}/login/")


def test_a_required_administrator_sets_up_the_app_first(live_server_haven, page, alice, org_a):
    org_a.require_admin_mfa = True
    org_a.save(update_fields=["require_admin_mfa"])
    sign_in(page, live_server_haven, alice)
    page.wait_for_url(f"{live_server_haven.url}/account/")
    page.goto(f"{live_server_haven.url}/devices/")
    page.wait_for_url(f"{live_server_haven.url}/account/")  # nothing else until the app is set up
    page.click("button:has-text(\"Set up an authenticator app\")")
    page.wait_for_url(f"{live_server_haven.url}/account/two-factor/")
    assert page.locator(".qr svg").count() == 1
    screenshot(page, "account_two_factor")
    # What the person's app does with the secret it scanned.
    key = base64.b32decode(page.inner_text("#totp-secret"))
    totp = TOTP(key)
    totp.time = time.time()
    page.fill("input[name=code]", f"{totp.token():06d}")
    page.click("button:has-text(\"Turn on two-factor authentication\")")
    page.wait_for_url(f"{live_server_haven.url}/account/")
    page.goto(f"{live_server_haven.url}/")
    page.wait_for_url(f"{live_server_haven.url}/")
    assert alice.email in page.inner_text("header")
