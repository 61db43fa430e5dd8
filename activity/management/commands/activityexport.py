"""manage.py activityexport --org NAME [--add NAME --kind syslog|webhook ...] [--remove NAME]
[--retry-dead] — list, add or remove an organization's SIEM export targets (as the console's page)."""
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from activity.export.targets import (
    ExportTargetInvalid,
    export_delivery_retry,
    export_target_create,
    export_target_delete,
)
from activity.models import ExportDelivery, ExportTarget

LABEL = "manage.py activityexport"


class Command(BaseCommand):
    help = ("List, add or remove where an organization's file-activity alerts (and events) are exported: "
            "syslog collectors (RFC 5424 over TLS or TCP, CEF or JSON) and HMAC-signed JSON webhooks.")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME")
        parser.add_argument("--add", metavar="NAME", help="add a target of this name")
        parser.add_argument("--kind", choices=ExportTarget.Kind.values)
        parser.add_argument("--host")
        parser.add_argument("--port", type=int)
        parser.add_argument("--plain-tcp", action="store_true", help="syslog without TLS")
        parser.add_argument("--ca-file", help="PEM file of the CA that signed the collector's certificate")
        parser.add_argument("--payload", choices=ExportTarget.Payload.values, default="json")
        parser.add_argument("--url", help="webhook URL (https://)")
        parser.add_argument("--events", action="store_true", help="export every event too, not only alerts")
        parser.add_argument("--remove", metavar="NAME")
        parser.add_argument("--retry-dead", action="store_true", help="queue every dead letter again")

    def handle(self, *args, org: str, **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}")
        if options["add"]:
            self._add(organization, options)
        if options["remove"]:
            target = ExportTarget.objects.filter(organization=organization, name=options["remove"]).first()
            if target is None:
                raise CommandError(f"No export target named {options['remove']!r}")
            export_target_delete(target=target, actor=None, actor_label=LABEL)
        if options["retry_dead"]:
            for delivery in ExportDelivery.objects.filter(target__organization=organization, status="dead"):
                export_delivery_retry(delivery=delivery, actor=None)
        for target in ExportTarget.objects.filter(organization=organization):
            where = target.url if target.kind == "webhook" else \
                f"{'tls' if target.tls else 'tcp'}://{target.host}:{target.port}"
            dead = target.deliveries.filter(status="dead").count()
            self.stdout.write(f"{target.name}  {target.kind}/{target.payload}  {where}  "
                              f"{'alerts+events' if target.include_events else 'alerts'}  dead letters: {dead}")

    def _add(self, organization, options):
        if not options["kind"]:
            raise CommandError("--add needs --kind syslog or --kind webhook")
        fields = {"payload": options["payload"], "include_events": options["events"]}
        if options["kind"] == "syslog":
            ca_pem = ""
            if options["ca_file"]:
                try:
                    with open(options["ca_file"]) as handle:
                        ca_pem = handle.read()
                except OSError as error:
                    raise CommandError(f"Cannot read {options['ca_file']}: {error}") from None
            fields.update(host=options["host"] or "", port=options["port"], tls=not options["plain_tcp"],
                          ca_pem=ca_pem)
        else:
            fields.update(url=options["url"] or "")
        try:
            _, secret = export_target_create(organization=organization, actor=None, actor_label=LABEL,
                                             name=options["add"], kind=options["kind"], **fields)
        except ExportTargetInvalid as error:
            raise CommandError(str(error)) from None
        if secret:
            self.stdout.write(f"secret (shown once): {secret}")
