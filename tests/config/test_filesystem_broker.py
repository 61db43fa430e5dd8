"""The embedded default's broker (config/filesystem_broker.py): a consumer takes whole messages only,
and a file in the queue that is not a message stops nothing."""
import json
import os
import subprocess
import sys
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection

from tests.support import PYTHON, REPO, embedded_env

TRANSPORT = "config.filesystem_broker:Transport"


@pytest.fixture
def folders(tmp_path) -> dict[str, str]:
    options = {"data_folder_in": tmp_path / "queue", "data_folder_out": tmp_path / "queue",
               "processed_folder": tmp_path / "processed", "control_folder": tmp_path / "control"}
    for folder in options.values():
        folder.mkdir(exist_ok=True)
    return {name: str(folder) for name, folder in options.items()}


class _QueueWatch:
    """An audit hook (it sees every open, write-side rename and lock a producer makes) that reads
    every message a consumer could take at that moment: each must already be whole."""

    def __init__(self, folder: str):
        self.folder, self.active, self.busy, self.looks, self.broken = folder, False, False, 0, []
        sys.addaudithook(self)  # cannot be removed: inactive outside the test's block

    def __call__(self, event, args):
        if not self.active or self.busy:
            return
        self.busy = True
        try:
            for name in os.listdir(self.folder):
                if name.partition(".")[2] == "q.msg":
                    self.looks += 1
                    try:
                        json.loads(Path(self.folder, name).read_bytes())
                    except (OSError, ValueError):
                        self.broken.append((event, name))
        finally:
            self.busy = False


def test_a_message_is_in_the_queue_whole_or_not_at_all(folders):
    watch = _QueueWatch(folders["data_folder_in"])
    with Connection("filesystem://", transport=TRANSPORT, transport_options=folders) as connection:
        channel = connection.default_channel
        watch.active = True
        try:
            for i in range(20):
                channel._put("q", {"body": "x" * 1000, "i": i})
        finally:
            watch.active = False
        assert watch.looks > 0 and watch.broken == []  # kombu's own transport: every message seen empty once
        assert [channel._get("q")["i"] for _ in range(20)] == list(range(20))
    assert os.listdir(folders["data_folder_in"]) == [] and os.listdir(folders["processed_folder"]) == []


def test_a_file_that_is_not_a_message_is_set_aside_and_the_next_message_delivered(folders, caplog):
    queue = Path(folders["data_folder_in"])
    (queue / "1_aaaa.q.msg").write_bytes(b"")  # what kombu's producer leaves visible before it writes
    (queue / "2_bbbb.q.msg").write_bytes(b'{"half": ')
    with Connection("filesystem://", transport=TRANSPORT, transport_options=folders) as connection:
        channel = connection.default_channel
        channel._put("q", {"i": 1})
        assert channel._get("q") == {"i": 1}
        with pytest.raises(Empty):
            channel._get("q")
    unreadable = Path(folders["processed_folder"]) / "unreadable"
    assert sorted(p.name for p in unreadable.iterdir()) == ["1_aaaa.q.msg", "2_bbbb.q.msg"]
    assert (unreadable / "2_bbbb.q.msg").read_bytes() == b'{"half": '  # kept as it was, for a look
    assert "1_aaaa.q.msg is not a readable message" in caplog.text and os.listdir(queue) == []


def test_the_embedded_default_uses_it_and_a_broker_server_does_not(tmp_path):
    code = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
            "from config.celery_app import app; c = app.connection_for_write();"
            "print(type(c.transport).__module__, c.transport.driver_type)")

    def transport(**env):
        return subprocess.run([PYTHON, "-c", code], cwd=REPO, env=embedded_env(tmp_path / "var", **env),
                              capture_output=True, text=True, timeout=120, check=True).stdout.split()

    assert transport() == ["config.filesystem_broker", "filesystem"]
    assert transport(CELERY_BROKER_URL=os.environ["CELERY_BROKER_URL"]) == ["kombu.transport.redis", "redis"]


def test_a_partial_file_a_killed_producer_left_is_deleted_once_it_is_stale(folders, caplog):
    queue = Path(folders["data_folder_in"])
    stale, fresh = queue / ".1_aaaa.q.msg.partial", queue / ".2_bbbb.q.msg.partial"
    stale.write_bytes(b'{"i": ')
    fresh.write_bytes(b'{"i": ')
    old = stale.stat().st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    with Connection("filesystem://", transport=TRANSPORT, transport_options=folders) as connection:
        channel = connection.default_channel
        channel._put("q", {"i": 1})
        assert channel._get("q") == {"i": 1}
    assert sorted(p.name for p in queue.iterdir()) == [fresh.name]  # a producer may still be writing that one
    assert ".1_aaaa.q.msg.partial, a message its producer never finished" in caplog.text
