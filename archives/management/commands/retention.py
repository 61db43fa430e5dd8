"""manage.py retention --org NAME [--user EMAIL | --device UUID] [--keep-all-days N] [--daily-days N]
[--weekly-weeks N] [--monthly-months N] [--deleted-days N] — set an organization's retention policy
(or a user's or device's override) and print the effective policy as JSON (docs/maintenance.md)."""
import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accounts.models import Device, Organization, User
from archives.retention_policies import retention_policy_set

OPTIONS = {"keep_all_days": "--keep-all-days", "daily_days": "--daily-days", "weekly_weeks": "--weekly-weeks",
           "monthly_months": "--monthly-months", "deleted_days": "--deleted-days"}


class Command(BaseCommand):
    help = "Set the retention policy of an organization (or override it for a user or a device)."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--user", metavar="EMAIL", help="override for this user's archives")
        scope.add_argument("--device", metavar="UUID", help="override for this device's archive")
        for name, flag in OPTIONS.items():
            parser.add_argument(flag, dest=name, type=int, metavar="N")

    def handle(self, *args, **options):
        org = Organization.objects.filter(Q(name=options["org"]) | Q(slug=options["org"])).first()
        if org is None:
            raise CommandError(f"no organization named {options['org']!r}")
        user = device = None
        if options["user"]:
            user = User.objects.filter(organization=org, email__iexact=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r} in {org.name}")
        if options["device"]:
            try:
                device = Device.objects.filter(organization=org, uuid=options["device"]).first()
            except ValidationError:
                device = None
            if device is None:
                raise CommandError(f"no device {options['device']!r} in {org.name}")
        try:
            row = retention_policy_set(organization=org, user=user, device=device,
                                       **{name: options[name] for name in OPTIONS})
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        scope = "device" if device else "user" if user else "organization"
        self.stdout.write(json.dumps({"scope": scope, **{name: getattr(row, name) for name in OPTIONS}}, indent=2))
