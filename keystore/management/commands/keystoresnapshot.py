"""manage.py keystoresnapshot take | list | verify [NAME] | restore NAME [--address URL[,URL...]]
[--token-file PATH] [--yes]

Raft snapshots of Haven's keystore on the pack storage (keystore/snapshots.py). `take` needs the
privileged token (run it where the key worker runs); `restore` needs the target cluster's root
token, read from a file or typed (never an argument: it would show in the process list).
"""
import getpass
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from keystore.models import KeystoreSnapshot
from keystore.selectors import keystore_snapshots
from keystore.snapshot_restore import RestoreRefused, keystore_snapshot_restore, keystore_snapshot_verify
from keystore.snapshots import keystore_snapshot_state, keystore_snapshot_take
from keystore.vault import vault_addresses

State = KeystoreSnapshot.State


class Command(BaseCommand):
    help = ("Raft snapshots of Haven's keystore: `take` one now, `list` them (and whether the newest is too old), "
            "`verify` stored ones against their sha256 without touching the keystore, `restore` one into a new, "
            "initialized and unsealed keystore (docs/operations.md, Keystore disaster recovery).")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["take", "list", "verify", "restore"])
        parser.add_argument("name", nargs="?", help="the snapshot (verify: all kept ones if omitted; restore: required)")
        parser.add_argument("--address", help="restore: the target node(s), comma-separated (default: VAULT_ADDR, or "
                                              "the embedded keystore)")
        parser.add_argument("--token-file", help="restore: a file holding the target's root token (else it is asked for)")
        parser.add_argument("--yes", action="store_true", help="restore: do not ask for confirmation")

    def handle(self, *args, action: str, name: str | None, **options):
        if action == "take":
            return self._take()
        if action == "list":
            return self._list()
        if action == "verify":
            return self._verify(name)
        return self._restore(name, options["address"], options["token_file"], options["yes"])

    def _take(self) -> None:
        row = keystore_snapshot_take(started_by="manage.py keystoresnapshot take")
        if row.state == State.SKIPPED:
            self.stdout.write(f"no snapshot: {row.error}")
            return
        if row.state != State.SUCCEEDED:
            raise CommandError(f"snapshot {row.name} failed: {row.error}")
        self.stdout.write(f"snapshot {row.name}: {row.size} bytes, sha256 {row.sha256}, raft index {row.raft_index}, "
                          f"from {row.node} (cluster {row.cluster_id or '?'}), stored as {row.storage_key}")

    def _list(self) -> None:
        hours, keep = settings.HAVEN_KEYSTORE_SNAPSHOT_HOURS, settings.HAVEN_KEYSTORE_SNAPSHOT_KEEP
        self.stdout.write(f"schedule: every {hours} h, keeping {keep}" if hours else
                          f"schedule: off (HAVEN_KEYSTORE_SNAPSHOT_HOURS=0), keeping {keep}")
        for row in keystore_snapshots():
            line = f"{row.name}  {row.state:<9}  {row.taken_at:%Y-%m-%d %H:%M:%S} UTC"
            if row.state == State.SUCCEEDED:
                line += f"  {row.size} bytes  sha256 {row.sha256}  raft index {row.raft_index}  cluster {row.cluster_id}"
            elif row.error:
                line += f"  {row.error}"
            self.stdout.write(line)
        check = keystore_snapshot_state()
        self.stdout.write(f"{'PROBLEM: the newest snapshot is too old: ' if check.stale else ''}{check.note}")

    def _verify(self, name: str | None) -> None:
        names = [name] if name else [row.name for row in keystore_snapshots().filter(state=State.SUCCEEDED)]
        failed = 0
        for each in names:
            try:
                snapshot = keystore_snapshot_verify(each)
            except RestoreRefused as error:
                self.stderr.write(f"PROBLEM: {error}")
                failed += 1
                continue
            self.stdout.write(f"{snapshot.name}: intact ({snapshot.size} bytes, sha256 {snapshot.sha256})")
        if failed:
            raise CommandError(f"{failed} snapshot(s) failed verification")

    def _restore(self, name: str | None, address: str | None, token_file: str | None, yes: bool) -> None:
        if not name:
            raise CommandError("restore needs the snapshot's name (manage.py keystoresnapshot list)")
        addresses = [a.strip().rstrip("/") for a in address.split(",") if a.strip()] if address else vault_addresses()
        token = self._token(token_file)
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("restore replaces everything in the target keystore: confirm with --yes")
            answer = input(f"Replace everything in the keystore at {', '.join(addresses)} with snapshot {name}? "
                           "Type the snapshot's name to confirm: ")
            if answer.strip() != name:
                raise CommandError("not confirmed: nothing restored")
        try:
            outcome = keystore_snapshot_restore(name=name, token=token, addresses=addresses,
                                                actor_label="manage.py keystoresnapshot restore")
        except RestoreRefused as error:
            raise CommandError(str(error)) from None
        snapshot = outcome.snapshot
        self.stdout.write(f"restored snapshot {snapshot.name} (sha256 {snapshot.sha256}, taken "
                          f"{snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC) on {outcome.node}")
        if outcome.sealed:
            self.stdout.write(f"the keystore is now SEALED: unseal every node with the ORIGINAL unseal shares (those of "
                              f"cluster {snapshot.cluster_id or 'the snapshot came from'}), not the new ones")
        else:
            self.stdout.write("the keystore did not seal (the snapshot came from this cluster, or it seals shortly): "
                              "check `manage.py keystore status`")
        if outcome.missing:
            self.stdout.write(f"WARNING: {len(outcome.missing)} key(s) were escrowed after this snapshot was taken and "
                              "are not in it:")
            for key in outcome.missing:
                self.stdout.write(f"  {key.organization.name}: {key.user.email} (key {key.key_id}, escrowed "
                                  f"{key.escrowed_at:%Y-%m-%d %H:%M:%S} UTC)")
        self.stdout.write("then: manage.py keystore status, manage.py keystore verify-audit, manage.py restoredrill")

    def _token(self, token_file: str | None) -> str:
        if token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as error:
                raise CommandError(f"cannot read {token_file}: {error.strerror}") from None
        elif sys.stdin.isatty():
            token = getpass.getpass("Root token of the target keystore: ").strip()
        else:
            raise CommandError("restore needs the target keystore's root token: --token-file PATH")
        if not token:
            raise CommandError("the token is empty")
        return token
