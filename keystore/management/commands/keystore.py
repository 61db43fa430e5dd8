"""manage.py keystore status | verify-audit | migrate --org NAME --to haven|private [--delete-source] | embedded"""
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from keystore.embedded import embedded_keystore_run
from keystore.migration import (
    MigrationRefused,
    keystore_migration_delete_source,
    keystore_migration_run,
    keystore_migration_start,
)
from keystore.services import key_access_verify
from keystore.vault import KeystoreUnavailable, keystore_status, vault_address


class Command(BaseCommand):
    help = ("Inspect the keystore: `status` (sealed/unsealed/unreachable), `verify-audit` (the key-access "
            "chain), or `migrate` an organization's keys between Haven's keystore and its private one.")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "verify-audit", "migrate", "embedded"],
                            help="embedded: run the embedded OpenBao in the foreground (when gunicorn runs alone)")
        parser.add_argument("--org", help="organization name or slug (migrate)")
        parser.add_argument("--to", choices=["haven", "private"], help="target keystore (migrate)")
        parser.add_argument("--delete-source", action="store_true",
                            help="after a verified migration, delete the Haven-managed copies (privileged)")

    def handle(self, *args, action: str, **options):
        if action == "migrate":
            return self._migrate(options["org"], options["to"], options["delete_source"])
        if action == "embedded":
            return self._embedded()
        if action == "status":
            state = keystore_status()
            self.stdout.write(f"keystore at {vault_address()}: {state}")
            if state != "unsealed":
                raise CommandError(f"the keystore is {state}")
            return
        try:
            result = key_access_verify()
        except KeystoreUnavailable as error:
            raise CommandError(f"cannot read the anchors: {error.reason}") from None
        for problem in result.problems:
            self.stderr.write(f"PROBLEM: {problem}")
        if not result.ok:
            raise CommandError(f"the key-access log failed verification ({len(result.problems)} problem(s))")
        self.stdout.write(f"key-access log intact: {result.records} record(s), {result.anchors} anchor(s)")
        if result.unanchored_tail:
            self.stdout.write(f"note: the newest {result.unanchored_tail} record(s) are not anchored yet (the keystore "
                              "was unavailable); the next anchored access covers them")

    def _migrate(self, org: str | None, target: str | None, delete_source: bool) -> None:
        if not org or not target:
            raise CommandError("migrate needs --org and --to")
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organization {org!r}")
        try:
            migration = keystore_migration_start(organization=organization, target=target,
                                                 actor_label="manage.py keystore migrate")
            migration = keystore_migration_run(migration=migration)
            self.stdout.write(f"migration {migration.uuid}: {migration.keys_verified}/{migration.keys_total} "
                              f"key(s) verified in the {target} keystore; the organization now uses it")
            if delete_source:
                deleted = keystore_migration_delete_source(migration=migration, actor_label="manage.py keystore")
                self.stdout.write(f"deleted {deleted} key(s) from the source keystore")
        except (MigrationRefused, KeystoreUnavailable) as error:
            raise CommandError(f"migration stopped: {error}; run it again to resume") from None

    def _embedded(self) -> None:
        """What `manage.py serve` does for the keystore, alone: start, unseal (dev mode), wait."""
        if settings.VAULT_ADDR:
            raise CommandError("VAULT_ADDR is set: Haven uses that keystore, not the embedded one")
        process = embedded_keystore_run(settings.HAVEN_KEYSTORE_DIR, settings.HAVEN_KEYSTORE_PORT)
        if process is None:
            raise CommandError("another process already runs the embedded keystore")
        self.stdout.write(f"embedded keystore ready on 127.0.0.1:{settings.HAVEN_KEYSTORE_PORT}", ending="\n")
        self.stdout.flush()
        signal.signal(signal.SIGTERM, lambda *_: process.terminate())
        try:
            process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait(timeout=20)
