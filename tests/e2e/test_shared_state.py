"""Two web servers agree (DESIGN §10, docs/operations.md "What is shared between processes").

Two gunicorn servers, each with its own HAVEN_DATA_DIR (as on two machines), one database and one
pack storage: a sign-in throttle counts guesses made on either, and a web restore asked for on one,
written by a key worker with a third data folder, downloads from the other. SAML: both serve the
same SP metadata and key, a login started on one completes on the other, and an assertion either
accepted is refused by both, even when both read the browser's session before either wrote it.
"""
import io
import os
import re
import subprocess
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from accounts.api_clients import api_client_create
from archives.models import Archive, RestoreJob
from tests.archives.test_web_restore import _write
from tests.conftest import PASSWORD
from tests.e2e.conftest import LiveServer, enroll_agent, haven_env, run_agent  # noqa: F401
from tests.support import REPO, VENV_BIN, child_pids, stop_process, wait_until


def machines(haven_env: dict, tmp_path: Path, **extra: str):  # noqa: F811
    """Two servers that share only what production machines share: PostgreSQL, Redis, the pack storage."""
    servers = []
    try:
        for name in ("a", "b"):
            env = {**haven_env, "HAVEN_DATA_DIR": str(tmp_path / f"machine-{name}"), **extra}
            (tmp_path / f"faults-{name}").mkdir()
            servers.append(LiveServer(env=env, fault_dir=tmp_path / f"faults-{name}", workers=2).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def two_machines(haven_env, tmp_path):  # noqa: F811
    yield from machines(haven_env, tmp_path, HAVEN_AUTH_MAX_FAILURES_PER_ACCOUNT_ADDRESS="4")


def _enroll(server: LiveServer, email: str, password: str) -> int:
    return httpx.post(f"{server.url}/api/v1/enroll", json={"email": email, "password": password,
                                                          "device_name": "laptop"}, timeout=30).status_code


@pytest.mark.slow
def test_a_sign_in_throttle_counts_guesses_made_on_either_server(two_machines, alice):
    first, second = two_machines
    for server in (first, second, first, second):  # four failures, two on each: neither alone reached 4
        assert _enroll(server, alice.email, "wrong password!") == 401
    assert _enroll(first, alice.email, PASSWORD) == 429
    assert _enroll(second, alice.email, PASSWORD) == 429


@pytest.mark.slow
def test_a_web_restore_asked_for_on_one_server_downloads_from_the_other(two_machines, haven_env, alice, org_a,  # noqa: F811
                                                                        tmp_path):
    first, second = two_machines
    worker_env = {**haven_env, "HAVEN_DATA_DIR": str(tmp_path / "machine-keys")}
    worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "keys", "--concurrency", "1",
                               "--max-tasks-per-child", "1", "--loglevel", "WARNING", "-n",
                               f"keys-shared-{os.getpid()}@%h"], cwd=REPO, env=worker_env)
    try:
        wait_until(lambda: child_pids(worker.pid), timeout=60, what="the worker's child process")
        source = tmp_path / "home"
        _write(source / "docs" / "report.txt", b"QUARTERLY REPORT " * 6000)
        _write(source / "big.bin", os.urandom(3 * 1024 * 1024 + 17))  # several download chunks
        config = enroll_agent(first, tmp_path / "agent", alice, "laptop")
        run_agent(config, "backup", str(source))
        archive = Archive.objects.get(user=alice)
        _, key = api_client_create(organization=org_a, name="SOAR", scopes=["restores:write"], created_by=alice)
        headers = {"Authorization": f"Bearer {key}"}

        created = httpx.post(f"{first.url}/api/v1/public/restores", json={"archive": str(archive.uuid)},
                             headers=headers, timeout=60)
        assert created.status_code == 201, created.text
        restore_id = created.json()["id"]
        deadline, status = time.monotonic() + 180, {}
        while time.monotonic() < deadline:
            status = httpx.get(f"{second.url}/api/v1/public/restores/{restore_id}", headers=headers, timeout=60).json()
            if status["status"] in ("done", "failed"):
                break
            time.sleep(0.5)
        assert status["status"] == "done", status

        download = httpx.get(f"{second.url}/api/v1/public/restores/{restore_id}/download", headers=headers,
                             timeout=60)
        assert download.status_code == 200, download.text
        assert int(download.headers["content-length"]) == len(download.content)
        with zipfile.ZipFile(io.BytesIO(download.content)) as unpacked:
            files = {name: unpacked.read(name) for name in unpacked.namelist()}
        assert files == {str(path).lstrip("/"): path.read_bytes() for path in source.rglob("*") if path.is_file()}
        job = RestoreJob.objects.get(uuid=restore_id)
        assert job.result_key.startswith("restore-results/") and job.result_size == len(download.content)
        for machine in ("machine-a", "machine-b", "machine-keys"):  # no machine holds it on its own disk
            assert not [p for p in (tmp_path / machine).rglob("*") if p.suffix in (".zip", ".tmp")], machine
        assert (Path(haven_env["HAVEN_PACK_DIR"]) / job.result_key).is_file()
    finally:
        stop_process(worker)


class Browser:
    """A browser's cookie jar by hand: Haven's SAML cookie is Secure + SameSite=None, which httpx
    will not send back over the test's plain HTTP."""

    def __init__(self):
        self.cookies: dict[str, str] = {}

    def send(self, method: str, url: str, **kwargs) -> httpx.Response:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = httpx.request(method, url, headers={"Cookie": cookie} if cookie else {}, timeout=60, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            name, _, value = header.split(";", 1)[0].partition("=")
            if value.strip('"'):
                self.cookies[name] = value
        return response


SAML_PUBLIC_URL = "https://backup.example"  # both servers are this one address behind the load balancer


@pytest.fixture(params=["database", "files"])
def two_saml_machines(request, haven_env, tmp_path):  # noqa: F811
    """`database`: the SP pair sealed in the database under HAVEN_STORAGE_KEY. `files`: the
    operator's own key and certificate files on both machines, and no storage key at all."""
    extra = {"HAVEN_PUBLIC_URL": SAML_PUBLIC_URL}
    if os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        extra["HAVEN_CACHE_URL"] = os.environ["CELERY_BROKER_URL"]
    if request.param == "database":
        extra["HAVEN_STORAGE_KEY"] = "a-storage-key-outside-both-data-folders"
    else:
        from console.saml.sp_keys import _generated_pair

        key_pem, cert_pem = _generated_pair()
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "sp.key").write_bytes(key_pem)
        (tmp_path / "etc" / "sp.crt").write_bytes(cert_pem)
        extra.update(HAVEN_SAML_SP_KEY_FILE=str(tmp_path / "etc" / "sp.key"),
                     HAVEN_SAML_SP_CERT_FILE=str(tmp_path / "etc" / "sp.crt"), HAVEN_STORAGE_KEY="")
    yield from machines(haven_env, tmp_path, **extra)


def _saml_login_start(browser: Browser, server: LiveServer, org) -> str:
    response = browser.send("GET", f"{server.url}/saml/{org.uuid}/login/", params={"next": "/"})
    assert response.status_code == 302, response.text[:500]
    return response.headers["location"]


def _saml_acs(browser: Browser, server: LiveServer, org, body: dict) -> httpx.Response:
    return browser.send("POST", f"{server.url}/saml/{org.uuid}/acs/", data=body)


def _signed_in(browser: Browser, server: LiveServer) -> bool:
    response = browser.send("GET", f"{server.url}/")
    return response.status_code == 200 and "alice@a.example" in response.text


@pytest.mark.slow
def test_a_saml_assertion_accepted_by_one_server_is_refused_by_both(two_saml_machines, org_a, alice, tmp_path):
    from django.contrib.sessions.models import Session

    from accounts.models import SamlAssertion, SamlServiceProviderKey, SamlSettings
    from tests.saml.idp import make_idp

    first, second = two_saml_machines
    with ThreadPoolExecutor(2) as pool:  # the first SAML requests of the installation, at once
        metadata = list(pool.map(lambda s: httpx.get(f"{s.url}/saml/{org_a.uuid}/metadata/", timeout=60),
                                 two_saml_machines))
    assert [m.status_code for m in metadata] == [200, 200], metadata[0].text[:300]
    assert metadata[0].text == metadata[1].text  # the same SP, the same certificate, from both
    [published] = re.findall(r"<(?:\w+:)?X509Certificate>([^<]+)</", metadata[0].text)
    operator_cert = tmp_path / "etc" / "sp.crt"
    if operator_cert.exists():
        expected, rows = operator_cert.read_text(), 0
    else:  # made once, by whichever server won, and on neither machine's disk
        expected, rows = SamlServiceProviderKey.objects.get().certificate_pem, 1
        assert not [p for m in ("machine-a", "machine-b") for p in (tmp_path / m).rglob("*") if p.suffix == ".key"]
    assert published == "".join(line for line in expected.splitlines() if "-----" not in line)
    assert SamlServiceProviderKey.objects.count() == rows
    idp = make_idp(tmp_path / "idp", "https://idp.example", metadata[0].text)
    SamlSettings.objects.create(organization=org_a, enabled=True, idp_entity_id=idp.entity_id,
                                idp_metadata_xml=idp.metadata_xml)

    # A login started on one server completes on the other (the outstanding request is shared)...
    browser = Browser()
    body = idp.answer(_saml_login_start(browser, second, org_a), alice.email)
    assert _saml_acs(browser, first, org_a, body).status_code == 302
    assert _signed_in(browser, first) and _signed_in(browser, second)
    # ...and its response is refused when posted again, to either.
    for server in (second, first):
        replay = Browser()  # whoever holds the response and the browser's SAML cookie
        replay.cookies = {"haven_saml": browser.cookies["haven_saml"]}
        assert 400 <= _saml_acs(replay, server, org_a, body).status_code < 500
        assert not _signed_in(replay, server)

    # The race a per-server replay store would lose: both servers read the browser's SAML session
    # while the request was still outstanding (the same POST sent to both at once). Only the
    # shared assertion-id store can refuse the second, on either server.
    browser = Browser()
    body = idp.answer(_saml_login_start(browser, first, org_a), alice.email)
    outstanding = Session.objects.get(session_key=browser.cookies["haven_saml"]).session_data
    assert _saml_acs(browser, first, org_a, body).status_code == 302
    for server in (second, first):
        assert Session.objects.filter(session_key=browser.cookies["haven_saml"]).update(session_data=outstanding)
        replayed = _saml_acs(browser, server, org_a, body)
        assert 400 <= replayed.status_code < 500
        assert "already used (replay)" in replayed.text
    assert SamlAssertion.objects.filter(organization=org_a).count() == 2
