"""manage.py keystore status [--org NAME] | verify-audit | migrate --org NAME --to haven|private [--keep-source]
| delete-source --org NAME | renew [--org NAME] | reseal | embedded"""
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
from keystore.models import KeystoreMigration, PrivateKeystore, UserKey
from keystore.private_keystores import (
    private_keystore_renew,
    private_keystore_renewal_failed,
    private_keystore_reseal,
    private_keystore_state,
    source_copies_note,
)
from keystore.sealing import StorageKeyMissing, embedded_default, storage_key_problem
from keystore.services import key_access_verify
from keystore.vault import KeystoreUnavailable, keystore_status, vault_address


class Command(BaseCommand):
    help = ("Inspect the keystore: `status` (Haven's keystore, every private one, where the keys are), "
            "`verify-audit` (the key-access chain), `migrate` an organization's keys between Haven's keystore "
            "and its private one, `delete-source` (copies a migration kept), `renew` a private keystore's "
            "certificate now, `reseal` secrets after setting HAVEN_STORAGE_KEY.")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "verify-audit", "migrate", "delete-source", "renew",
                                               "reseal", "embedded"],
                            help="embedded: run the embedded OpenBao in the foreground (when gunicorn runs alone)")
        parser.add_argument("--org", help="organization name or slug (status: also list each key's location)")
        parser.add_argument("--to", choices=["haven", "private"], help="target keystore (migrate)")
        parser.add_argument("--keep-source", action="store_true",
                            help="migrate: keep the source copies (by default they are deleted once every key is "
                                 "verified at the target)")
        parser.add_argument("--delete-source", action="store_true", help="migrate: the default now; kept for scripts")

    def handle(self, *args, action: str, **options):
        if action == "migrate":
            return self._migrate(options["org"], options["to"], options["keep_source"])
        if action == "embedded":
            return self._embedded()
        if action == "status":
            return self._status(options["org"])
        if action == "delete-source":
            return self._delete_source(options["org"])
        if action == "renew":
            return self._renew(options["org"])
        if action == "reseal":
            try:
                self.stdout.write(f"resealed {private_keystore_reseal()} row(s): private keystores and the SAML SP key")
            except StorageKeyMissing as error:
                raise CommandError(error.reason) from None
            return
        try:
            result = key_access_verify()
        except KeystoreUnavailable as error:
            raise CommandError(f"cannot read the anchors: {error.reason}") from None
        for problem in result.problems:
            self.stderr.write(f"PROBLEM: {problem}")
        if not result.ok:
            raise CommandError(f"the key-access log failed verification ({len(result.problems)} problem(s))")
        self.stdout.write(f"key-access log intact: {result.records} record(s), {result.anchors} anchor(s) "
                          f"in {result.chains} chain(s)")
        if result.unanchored_tail:
            self.stdout.write(f"note: the newest {result.unanchored_tail} record(s) are not anchored yet (the keystore "
                              "was unavailable); the next anchored access covers them")

    def _organization(self, org: str | None, action: str) -> Organization:
        if not org:
            raise CommandError(f"{action} needs --org")
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organization {org!r}")
        return organization

    def _migrate(self, org: str | None, target: str | None, keep_source: bool) -> None:
        if not target:
            raise CommandError("migrate needs --org and --to")
        organization = self._organization(org, "migrate")
        try:
            migration = keystore_migration_start(organization=organization, target=target, keep_source=keep_source,
                                                 actor_label="manage.py keystore migrate")
            migration = keystore_migration_run(migration=migration)
        except (MigrationRefused, KeystoreUnavailable) as error:
            raise CommandError(f"migration stopped: {error}; run it again to resume") from None
        self.stdout.write(f"migration {migration.uuid}: {migration.keys_verified}/{migration.keys_total} "
                          f"key(s) verified in the {target} keystore; the organization now uses it")
        if migration.source_deleted_at:
            self.stdout.write(f"deleted the source copies from the {migration.source} keystore")
        note = source_copies_note(organization)
        if note:
            self.stdout.write(f"note: {note}")

    def _delete_source(self, org: str | None) -> None:
        organization = self._organization(org, "delete-source")
        migration = KeystoreMigration.objects.filter(organization=organization).order_by("-started_at").first()
        if migration is None:
            raise CommandError("the organization has no migration")
        try:
            deleted = keystore_migration_delete_source(migration=migration, actor_label="manage.py keystore")
        except (MigrationRefused, KeystoreUnavailable) as error:
            raise CommandError(f"nothing more deleted: {error}") from None
        self.stdout.write(f"deleted the Haven-managed copies of {deleted} key(s)")

    def _renew(self, org: str | None) -> None:
        """Renew now (what the daily task does when a certificate is due), whatever the expiry date."""
        keystores = PrivateKeystore.objects.select_related("organization")
        if org:
            keystores = keystores.filter(organization=self._organization(org, "renew"))
        failed = 0
        for keystore in keystores:
            try:
                result = private_keystore_renew(keystore=keystore, force=True)
            except Exception as error:  # noqa: BLE001 - recorded and mailed like the daily task's failures
                private_keystore_renewal_failed(keystore=keystore, error=error)
                self.stderr.write(f"{keystore.organization.name}: renewal failed: {error}")
                failed += 1
                continue
            self.stdout.write(f"{keystore.organization.name}: renewed, login entry {result.entry}, "
                              f"expires {result.not_after:%Y-%m-%d}")
        if failed:
            raise CommandError(f"{failed} renewal(s) failed")

    def _status(self, org: str | None) -> None:
        problems = []
        state = keystore_status()
        self.stdout.write(f"keystore at {vault_address()}: {state}")
        if state != "unsealed":
            problems.append(f"the keystore is {state}")
        storage = storage_key_problem()
        if storage:
            severity = "WARNING (embedded default)" if embedded_default() else "PROBLEM"
            self.stdout.write(f"{severity}: {storage}")
            if not embedded_default() and PrivateKeystore.objects.exists():  # something sealed depends on it
                problems.append(storage)
        organizations = [self._organization(org, "status")] if org else Organization.objects.order_by("name")
        for organization in organizations:
            problems += self._organization_status(organization, list_keys=bool(org))
        if problems:
            raise CommandError("; ".join(problems))

    def _organization_status(self, organization: Organization, *, list_keys: bool) -> list[str]:
        keys = UserKey.objects.filter(organization=organization, state=UserKey.State.ESCROWED)
        keystore = PrivateKeystore.objects.filter(organization=organization).first()
        if keystore is None and not list_keys:
            return []
        in_haven = keys.filter(location=UserKey.Location.HAVEN).count()
        self.stdout.write(f"{organization.name}: {in_haven} key(s) in Haven's keystore, "
                          f"{keys.count() - in_haven} in its own")
        problems = []
        if keystore is not None:
            state = private_keystore_state(keystore)
            self.stdout.write(
                f"  private keystore {keystore.address}: {state.health}, "
                f"{'in use' if keystore.in_use else 'not in use'}; certificate {keystore.cert_subject} "
                f"sha256 {keystore.cert_fingerprint or '?'}, expires {keystore.cert_not_after:%Y-%m-%d} "
                f"({state.days_left} day(s)), login entry {keystore.cert_role}")
            # Fatal only for a keystore that serves keys; one configured for later is just reported.
            serving = keystore.in_use or state.keys_here > 0
            for problem in state.problems:
                self.stdout.write(f"  {'PROBLEM' if serving else 'note'}: {problem}")
            problems = [f"{organization.name}: {p}" for p in state.problems] if serving else []
        note = source_copies_note(organization)
        if note:
            self.stdout.write(f"  note: {note}")
        if list_keys:
            for row in keys.select_related("user").order_by("user__email"):
                self.stdout.write(f"  {row.user.email}: key {row.key_id} in the {row.location} keystore")
        return problems

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
