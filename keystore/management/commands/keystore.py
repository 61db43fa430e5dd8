"""manage.py keystore status | verify-audit"""
from django.core.management.base import BaseCommand, CommandError

from keystore.services import key_access_verify
from keystore.vault import KeystoreUnavailable, keystore_status, vault_address


class Command(BaseCommand):
    help = "Inspect the keystore: `status` (sealed/unsealed/unreachable) or `verify-audit` (the key-access chain)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "verify-audit"])

    def handle(self, *args, action: str, **options):
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
