"""Raft snapshots of an OpenBao/Vault keystore through hvac: take one, check one, restore one.

A snapshot (`sys/storage/raft/snapshot`) is OpenBao's own format, a gzip tar of `meta.json`,
`state.bin` (every stored value, encrypted by the barrier: it restores only with the unseal shares
of the cluster it came from; storage paths — UUIDs — are in the clear) and `SHA256SUMS` over those
two. Haven checks those sums before it keeps a snapshot and again before it restores one.

Taking one needs `read` on `sys/storage/raft/snapshot` (Haven's privileged policy,
keystore/embedded.py; only the key worker holds that token). Restoring (`snapshot-force`) is an
operator's act with the new cluster's root token: Haven's own tokens are never granted it.
"""
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass

import hvac
import requests
from django.conf import settings
from hvac import exceptions as hvac_errors

from keystore.engines import privileged_haven_token
from keystore.vault import KeystoreUnavailable, vault_address, vault_addresses, with_failover

SNAPSHOT_TIMEOUT = 120  # a large keystore takes a while to serialize before the first byte


class SnapshotInvalid(Exception):
    """Not a whole raft snapshot, or not the one recorded (its sha256 or size differ)."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    sha256: str
    node: str
    cluster_id: str


def storage_type() -> str | None:
    """The keystore's storage backend ("raft", "inmem", "file", ...) from the unauthenticated
    sys/seal-status, or None when no node answers (then a snapshot is attempted and fails loudly)."""
    for address in [vault_address(), *vault_addresses()]:
        try:
            status = hvac.Client(url=address, verify=settings.VAULT_CACERT or True, timeout=5).sys.read_seal_status()
        except (requests.exceptions.RequestException, hvac_errors.VaultError):
            continue
        return status.get("storage_type") or None
    return None


def snapshot_fetch() -> Fetched:
    """Stream a snapshot from the active node (moving across the cluster's nodes on node trouble)."""
    token = privileged_haven_token()

    def fetch(client: hvac.Client) -> Fetched:
        privileged = hvac.Client(url=client.url, token=token, verify=settings.VAULT_CACERT or True,
                                 timeout=SNAPSHOT_TIMEOUT)
        try:
            response = privileged.sys.take_raft_snapshot()
            digest, chunks = hashlib.sha256(), []
            for chunk in response.iter_content(chunk_size=1 << 20):
                digest.update(chunk)
                chunks.append(chunk)
            status = privileged.sys.read_seal_status()
        except hvac_errors.Forbidden:
            raise KeystoreUnavailable("the privileged token may not take snapshots: give Haven's privileged policy "
                                      "`read` on sys/storage/raft/snapshot (docs/operations.md)") from None
        except (hvac_errors.InvalidRequest, hvac_errors.UnsupportedOperation, hvac_errors.InvalidPath) as error:
            raise KeystoreUnavailable(f"the keystore refused the snapshot: {str(error).splitlines()[0]}") from None
        except requests.exceptions.ChunkedEncodingError:
            raise KeystoreUnavailable("the snapshot was cut off", node_trouble=True) from None
        finally:
            privileged.adapter.close()
        return Fetched(data=b"".join(chunks), sha256=digest.hexdigest(), node=client.url,
                       cluster_id=status.get("cluster_id") or "")

    return with_failover(fetch)


def snapshot_check(data: bytes) -> dict:
    """A whole raft snapshot: a gzip tar whose SHA256SUMS match its meta.json and state.bin.
    Returns meta.json (raft Index, Term). Raises SnapshotInvalid otherwise."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = {member.name: member for member in archive.getmembers() if member.isfile()}
            if not {"meta.json", "state.bin", "SHA256SUMS"} <= set(members):
                raise SnapshotInvalid(f"not a raft snapshot (it holds {sorted(members)})")
            sums = {}
            for line in archive.extractfile(members["SHA256SUMS"]).read().decode().splitlines():
                digest, _, name = line.partition("  ")
                sums[name.strip()] = digest.strip()
            for name in ("meta.json", "state.bin"):
                digest, handle = hashlib.sha256(), archive.extractfile(members[name])
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                if sums.get(name) != digest.hexdigest():
                    raise SnapshotInvalid(f"the snapshot's {name} does not match its SHA256SUMS")
            return json.loads(archive.extractfile(members["meta.json"]).read())
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError, ValueError) as error:
        raise SnapshotInvalid(f"not a raft snapshot ({type(error).__name__})") from None


def node_states(addresses: list[str]) -> dict[str, str]:
    """active, standby, sealed, uninitialized or unreachable, per node (unauthenticated sys/health)."""
    states = {}
    for address in addresses:
        try:
            health = hvac.Client(url=address, verify=settings.VAULT_CACERT or True, timeout=5).sys.read_health_status(
                method="GET", standby_ok=True, sealed_code=200, uninit_code=200, standby_code=200)
            health = health.json() if hasattr(health, "json") else health
        except (requests.exceptions.RequestException, hvac_errors.VaultError, ValueError):
            states[address] = "unreachable"
            continue
        states[address] = ("uninitialized" if not health.get("initialized") else "sealed" if health.get("sealed")
                           else "standby" if health.get("standby") else "active")
    return states


def snapshot_force_restore(address: str, token: str, data: bytes) -> None:
    """Install the snapshot on the active node `address` (snapshot-force: its unseal shares differ)."""
    client = hvac.Client(url=address, token=token, verify=settings.VAULT_CACERT or True, timeout=SNAPSHOT_TIMEOUT)
    try:
        client.sys.force_restore_raft_snapshot(data)
    except (hvac_errors.Forbidden, hvac_errors.Unauthorized):
        raise KeystoreUnavailable("the token may not restore snapshots (it needs `update` on "
                                  "sys/storage/raft/snapshot-force: use the new cluster's root token)") from None
    except hvac_errors.VaultError as error:
        raise KeystoreUnavailable(f"the keystore refused the snapshot: {str(error).splitlines()[0]}") from None
    except requests.exceptions.RequestException as error:
        raise KeystoreUnavailable(f"the keystore is unreachable ({type(error).__name__})") from None
    finally:
        client.adapter.close()


def wait_sealed(address: str, timeout: float = 30.0) -> bool:
    """After a restore with other unseal shares the node seals itself, a moment later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node_states([address])[address] == "sealed":
            return True
        time.sleep(0.25)
    return False
