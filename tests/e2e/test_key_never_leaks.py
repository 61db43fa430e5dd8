"""K never leaves the keystore except to the user's devices: after a full escrow → keystore
migration (a Celery task on the keys queue) → computer replacement → restore cycle through real
gunicorn and Celery processes, the key appears in none of the server's log files, none of the
messages that crossed the Celery broker, and no table of the database — raw, base64 or hex.
(tests/keystore/test_escrow.py::test_the_key_never_appears_in_logs checks the captured logs.)"""
import base64
import os
import re
import subprocess
import threading
import time
from urllib.parse import urlparse

import pytest
import redis
from django.db import connection

from tests.e2e.conftest import restored, run_agent, tree_state
from tests.keystore.private_vault_fixture import private_vault_fixture  # noqa: F401 - the fixture
from tests.support import REPO, VENV_BIN, free_port, http_ready, stop_process, wait_until

STORAGE_KEY = "a-test-storage-key-outside-the-data-folder"

pytestmark = pytest.mark.slow


def key_forms(key: bytes) -> list[bytes]:
    """Every spelling of K worth looking for, as bytes."""
    b64 = base64.b64encode(key)
    return [key, b64, b64.rstrip(b"="), base64.urlsafe_b64encode(key).rstrip(b"="), key.hex().encode(),
            key.hex().upper().encode()]


def assert_no_key(blob: bytes, key: bytes, where: str) -> None:
    found = [index for index, form in enumerate(key_forms(key)) if form in blob]
    assert not found, f"the user key appears in {where} (spelling {found})"  # never print the blob: it holds K


class BrokerRecorder:
    """Every command sent to the broker's Redis database during the run (Redis MONITOR), so task
    messages are seen even after a worker consumed and acknowledged them."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, socket_timeout=None)  # quiet spells are not the end
        self.db = int(urlparse(url).path.strip("/") or 0)
        self.commands: list[str] = []
        self.ended_by: Exception | None = None
        self._monitor = self.client.monitor().__enter__()  # MONITOR is on before the run starts
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        # Raw MONITOR lines ('<time> [<db> <client>] "LPUSH" "keys" "{...}"'): parsed here, since
        # one odd byte must not end the recording.
        connection = self._monitor.connection
        while True:
            try:
                line = connection.read_response(disable_decoding=True)
            except redis.exceptions.TimeoutError:
                continue
            except Exception as error:  # noqa: BLE001 - the connection is closed at the end of the run
                self.ended_by = error
                return
            text = line.decode("utf-8", "backslashreplace") if isinstance(line, bytes) else str(line)
            match = re.match(r"[\d.]+ \[(\d+) ", text)
            if match and int(match.group(1)) == self.db:
                self.commands.append(text)

    def stop(self) -> None:
        self._monitor.connection.disconnect()
        self._thread.join(timeout=10)

    def payloads(self) -> list[bytes]:
        """Each command, plus what its base64 fields decode to (kombu base64-encodes task bodies)."""
        found = []
        for command in self.commands:
            found.append(command.encode())
            for token in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", command):
                try:
                    found.append(base64.b64decode(token + "=" * (-len(token) % 4)))
                except ValueError:
                    pass
        return found


def database_rows():
    """(table, row) for every row of every table of the test's database."""
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - names come from the catalog
            for row in cursor.fetchall():
                yield table, row


def as_bytes(value) -> bytes:
    if isinstance(value, memoryview | bytes | bytearray):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def test_the_key_is_in_no_log_file_task_message_or_table_after_a_full_cycle(haven_env, vault, private_vault, alice,
                                                                            settings, tmp_path):
    from keystore.migration import keystore_migration_start
    from keystore.models import KeystoreMigration, UserKey
    from keystore.private_keystores import private_keystore_configure
    from keystore.services import key_path
    from keystore.tasks import keystore_migrate_task

    logs = tmp_path / "logs"
    logs.mkdir()
    # Run as production does (PostgreSQL): a storage key is required, and the test Vault listens on
    # loopback, which only an operator's setting allows. Both processes must unseal the private
    # keystore's PKCS12 that this process seals.
    settings.HAVEN_STORAGE_KEY = STORAGE_KEY
    settings.HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE = True
    env = {**haven_env, "HAVEN_LOG_LEVEL": "DEBUG", "HAVEN_SECRET_KEY": settings.SECRET_KEY,
           "HAVEN_STORAGE_KEY": STORAGE_KEY, "HAVEN_PRIVATE_KEYSTORE_ALLOW_PRIVATE": "1"}
    recorder = BrokerRecorder(os.environ["CELERY_BROKER_URL"])
    port = free_port()
    with open(logs / "gunicorn.log", "wb") as web_log:
        web = subprocess.Popen([str(VENV_BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}",
                                "--workers", "2", "--timeout", "600", "--access-logfile", str(logs / "access.log"),
                                "--error-logfile", str(logs / "error.log"), "--log-level", "debug",
                                "--capture-output"], cwd=REPO, env=env, stdout=web_log, stderr=subprocess.STDOUT)
    with open(logs / "celery.out", "wb") as worker_out:
        worker = subprocess.Popen([str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "celery,keys",
                                   "--concurrency", "1", "--max-tasks-per-child", "1", "--loglevel", "DEBUG",
                                   "--logfile", str(logs / "celery.log"), "-n", f"keys-{port}@%h"],
                                  cwd=REPO, env=env, stdout=worker_out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ready(f"{url}/login/"), timeout=60, what="gunicorn to answer")
        source = tmp_path / "home"
        (source / "notes").mkdir(parents=True)
        (source / "notes" / "plan.txt").write_bytes(b"the plan\n" * 5000)
        (source / "photo.raw").write_bytes(os.urandom(300_000))

        old = tmp_path / "old-agent"
        run_agent(old, "enroll", "--server", url, "--user", alice.email, "--device-name", "old-laptop")  # escrow
        run_agent(old, "backup", str(source))
        assert UserKey.objects.get(user=alice).state == "escrowed"
        stored = vault["client"].secrets.kv.v1.read_secret(path=key_path(alice), mount_point="secret")["data"]
        key = base64.b64decode(stored["key"])

        # The key moves to the organization's own Vault in a Celery task (keys queue).
        private_keystore_configure(organization=alice.organization, actor=alice, address=private_vault.address,
                                   ca_pem=private_vault.ca_pem.decode(), pkcs12=private_vault.pkcs12,
                                   password=private_vault.password, cert_role=private_vault.cert_role)
        migration = keystore_migration_start(organization=alice.organization, target="private", actor_label="test")
        keystore_migrate_task.delay(migration.pk)
        wait_until(lambda: KeystoreMigration.objects.get(pk=migration.pk).state != "running", timeout=120,
                   what="the worker to run the migration")
        assert KeystoreMigration.objects.get(pk=migration.pk).state == "completed"
        assert UserKey.objects.get(user=alice).location == "private"

        new = tmp_path / "new-agent"  # computer replacement: the key comes back from the private Vault
        enrolled = run_agent(new, "enroll", "--server", url, "--user", alice.email, "--device-name", "new-laptop")
        assert "received your escrowed key" in enrolled.stdout
        out = tmp_path / "restored"
        run_agent(new, "restore", "--from-device", "old-laptop", "--to", str(out))
        assert tree_state(restored(out, source)) == tree_state(source)
        time.sleep(1)  # let the last log lines and broker commands land
    finally:
        stop_process(worker)
        stop_process(web)
        recorder.stop()

    log_files = sorted(path for path in logs.iterdir() if path.stat().st_size)
    assert {path.name for path in log_files} >= {"access.log", "error.log", "celery.log"}
    assert "haven.keystore.migrate" in (logs / "celery.log").read_text()  # the worker really ran it
    for path in log_files:
        assert_no_key(path.read_bytes(), key, f"the server log {path.name}")

    assert any("haven.keystore.migrate" in command for command in recorder.commands), (
        f"no task message recorded ({len(recorder.commands)} commands, recorder ended by {recorder.ended_by!r})")
    payloads = recorder.payloads()
    assert any(payload.startswith(f"[[{migration.pk}]".encode()) for payload in payloads), "task bodies not decoded"
    for payload in payloads:
        assert_no_key(payload, key, "a message sent through the Celery broker")

    tables = set()
    for table, row in database_rows():
        tables.add(table)
        for value in row:
            assert_no_key(as_bytes(value), key, f"the database table {table}")
    assert {"keystore_userkey", "keystore_keyaccess", "archives_fileversion"} <= tables
