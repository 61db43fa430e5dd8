"""manage.py activityconnector --org NAME [--add NAME --kind m365|google_drive ...] [--pull] — list,
add or pull an organization's cloud-service connectors; credentials are read from a JSON file
and stored sealed."""
import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from activity.connectors import CONNECTORS, cloud_connector_create, cloud_connector_pull
from activity.models import CloudConnector


class Command(BaseCommand):
    help = ("List, add or pull cloud-service connectors (Microsoft 365 audit log, Google Drive activity). "
            "--credentials-file: JSON, m365 {client_id, client_secret}, google_drive {token}.")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME")
        parser.add_argument("--add", metavar="NAME")
        parser.add_argument("--kind", choices=sorted(CONNECTORS))
        parser.add_argument("--base-url", help="API root (default: the service's public one)")
        parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                            help="m365: tenant_id=…, token_url=…")
        parser.add_argument("--credentials-file")
        parser.add_argument("--pull", action="store_true", help="pull every connector of the org now")

    def handle(self, *args, org: str, **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}")
        if options["add"]:
            if not options["kind"] or not options["credentials_file"]:
                raise CommandError("--add needs --kind and --credentials-file")
            try:
                with open(options["credentials_file"]) as handle:
                    credentials = json.load(handle)
                settings = dict(item.split("=", 1) for item in options["setting"])
                default = {"m365": "https://manage.office.com", "google_drive": "https://admin.googleapis.com"}
                cloud_connector_create(organization=organization, kind=options["kind"], name=options["add"],
                                       base_url=options["base_url"] or default[options["kind"]],
                                       credentials=credentials, settings=settings,
                                       actor_label="manage.py activityconnector")
            except (OSError, ValueError, ValidationError) as error:
                raise CommandError(str(error)) from None
        for connector in CloudConnector.objects.filter(organization=organization).order_by("name"):
            if options["pull"]:
                self.stdout.write(f"{connector.name}: {cloud_connector_pull(connector_id=connector.pk)}")
                connector.refresh_from_db()
            self.stdout.write(f"{connector.name}  {connector.kind}  cursor={connector.cursor or '-'}  "
                              f"last error: {connector.last_error or '-'}")
