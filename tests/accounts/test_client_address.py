"""client_address: REMOTE_ADDR unless the peer is a trusted proxy; then the forwarded header, right to left."""
import pytest
from django.test import RequestFactory, override_settings


def address_of(remote_addr, forwarded=None, **headers):
    from accounts.network import client_address

    meta = {"REMOTE_ADDR": remote_addr, **headers}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return client_address(RequestFactory().get("/", **meta))


def test_without_trusted_proxies_the_header_is_ignored():
    assert address_of("203.0.113.5", "192.0.2.1") == "203.0.113.5"


@override_settings(HAVEN_TRUSTED_PROXIES=["10.0.0.0/8", "2001:db8::1"])
@pytest.mark.parametrize("peer,forwarded,expected", [
    ("10.0.0.2", "203.0.113.5", "203.0.113.5"),
    # the client wrote the leftmost entries itself; the trusted proxies appended the rest
    ("10.0.0.2", "1.1.1.1, 203.0.113.5, 10.9.9.9", "203.0.113.5"),
    ("2001:db8::1", "198.51.100.7", "198.51.100.7"),
    ("::ffff:10.0.0.2", "198.51.100.7", "198.51.100.7"),
    ("10.0.0.2", None, "10.0.0.2"),
    ("10.0.0.2", "not-an-address", "10.0.0.2"),
    ("10.0.0.2", "junk, 10.0.0.3", "10.0.0.3"),
    ("192.0.2.50", "203.0.113.5", "192.0.2.50"),  # an untrusted peer
    ("10.0.0.2", "203.0.113.5:41234", "203.0.113.5"),
    ("10.0.0.2", "[2001:db8::5]:443", "2001:db8::5"),
])
def test_the_forwarded_header_is_walked_right_to_left_past_trusted_proxies(peer, forwarded, expected):
    assert address_of(peer, forwarded) == expected


@override_settings(HAVEN_TRUSTED_PROXIES=["127.0.0.1"], HAVEN_TRUSTED_PROXY_HEADER="X-Real-IP")
def test_the_header_is_configurable():
    assert address_of("127.0.0.1", "192.0.2.1", HTTP_X_REAL_IP="198.51.100.9") == "198.51.100.9"


def test_an_invalid_trusted_proxy_setting_fails_loudly():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "import config.settings"], capture_output=True, text=True,
                            env={**__import__("os").environ, "HAVEN_TRUSTED_PROXIES": "10.0.0.0/8, proxy.lan"})
    assert result.returncode != 0 and "proxy.lan" in result.stderr
