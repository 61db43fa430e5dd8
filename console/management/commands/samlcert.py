"""manage.py samlcert show | rotate [--stage] | activate | import --key FILE --cert FILE [--stage]

The installation's SAML SP certificate (console/saml/sp_keys.py), the same on every web host.
A rollover without a sign-in outage: `rotate --stage` (both certificates in every SP's metadata),
let each organization's IdP refresh the metadata, then `activate`. Plain `rotate` switches at once."""
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from django.core.management.base import BaseCommand, CommandError

from console.saml.sp_keys import (
    SpKeyRefused,
    SpKeyUnavailable,
    fingerprint,
    sp_certificates,
    sp_key_activate,
    sp_key_install,
    sp_key_rotate,
    sp_keypair,
)

ACTOR = "manage.py samlcert"


class Command(BaseCommand):
    help = ("Show, rotate, stage and activate, or import the SAML service provider's key pair, which every "
            "web host shares (kept in the database sealed under HAVEN_STORAGE_KEY, unless "
            "HAVEN_SAML_SP_KEY_FILE/HAVEN_SAML_SP_CERT_FILE name the operator's own files).")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["show", "rotate", "activate", "import"])
        parser.add_argument("--stage", action="store_true",
                            help="rotate/import: publish the new certificate next to the current one; it signs "
                                 "only after `activate`")
        parser.add_argument("--key", type=Path, help="import: the PEM private key (unencrypted, RSA ≥ 2048 bits)")
        parser.add_argument("--cert", type=Path, help="import: the PEM certificate of that key")
        parser.add_argument("--pem", action="store_true", help="show: print the certificates in PEM too")

    def handle(self, *args, action: str, stage: bool, key: Path | None, cert: Path | None, pem: bool, **options):
        try:
            if action == "rotate":
                sp_key_rotate(stage=stage, actor_label=ACTOR)
            elif action == "activate":
                sp_key_activate(actor_label=ACTOR)
            elif action == "import":
                if not key or not cert:
                    raise CommandError("import needs --key FILE and --cert FILE")
                try:
                    key_pem, cert_pem = key.read_bytes(), cert.read_bytes()
                except OSError as error:
                    raise CommandError(f"cannot read {error.filename}: {error.strerror}") from None
                sp_key_install(key_pem=key_pem, cert_pem=cert_pem, stage=stage, actor_label=ACTOR)
            self._show(pem or action != "show")
        except (SpKeyRefused, SpKeyUnavailable) as error:
            raise CommandError(str(error)) from None
        if action in ("rotate", "import", "activate"):
            self.stdout.write("Every web host uses it from its next SAML request. Organizations whose IdP "
                              "pins the SP certificate must load the SP metadata again "
                              "(/saml/<org uuid>/metadata/).")

    def _show(self, with_pem: bool) -> None:
        source = sp_keypair().source
        self.stdout.write("source: " + ("HAVEN_SAML_SP_KEY_FILE/HAVEN_SAML_SP_CERT_FILE" if source == "files"
                                        else "the database, sealed under HAVEN_STORAGE_KEY"))
        for slot, certificate in sp_certificates().items():
            self.stdout.write(f"{slot}: sha256 {fingerprint(certificate)}  subject "
                              f"{certificate.subject.rfc4514_string()}  valid until "
                              f"{certificate.not_valid_after_utc:%Y-%m-%d}")
            if with_pem:
                self.stdout.write(certificate.public_bytes(serialization.Encoding.PEM).decode())
