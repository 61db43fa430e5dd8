"""manage.py policy --org NAME [--group NAME | --device UUID] [--include PATH]... [--exclude GLOB]...
[--interval SECONDS] ... — set an organization's backup policy or a group's or device's override,
then print the override and the resulting effective policy as JSON."""
import json
import re
import uuid

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accounts.models import Device, Group, Organization
from archives.policies import (
    policy_effective,
    policy_effective_for_scope,
    policy_overrides,
    policy_reset,
    policy_set,
)
from archives.policy_models import BackupPolicy

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _ranges(value: str, names: list[str] | None, high: int) -> list[int]:
    """"8-18" or "mon-fri,sun" -> the listed values; "" or "any" -> [] (no restriction)."""
    if value.strip().lower() in ("", "any"):
        return []
    result: set[int] = set()
    for part in value.lower().split(","):
        bounds = [b.strip() for b in part.split("-")]
        try:
            numbers = [names.index(b) if names and b in names else int(b) for b in bounds]
        except ValueError:
            raise CommandError(f"cannot read {part!r}") from None
        if len(numbers) not in (1, 2) or any(not 0 <= n <= high for n in numbers):
            raise CommandError(f"{part!r} is outside 0-{high}")
        result.update(range(numbers[0], numbers[-1] + 1))
    return sorted(result)


def _bytes(value: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)i?b?(?:/s)?\s*", value.lower())
    if not match:
        raise CommandError(f"{value!r} is not a rate such as 5000000, 500k or 5M (bytes per second)")
    return int(match[1]) * {"": 1, "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3}[match[2]]


class Command(BaseCommand):
    help = "Set or override a backup policy; prints the override and the effective policy."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--group", metavar="NAME", help="override for the members' devices of this group")
        scope.add_argument("--device", metavar="UUID", help="override for one device")
        parser.add_argument("--include", action="append", metavar="PATH", help="back up PATH (repeat; replaces the list)")
        parser.add_argument("--exclude", action="append", metavar="GLOB", help="never back up GLOB (repeat; replaces)")
        parser.add_argument("--no-default-excludes", action="store_true", help="do not apply Haven's default exclusions")
        parser.add_argument("--interval", type=int, metavar="SECONDS", help="back up every SECONDS")
        parser.add_argument("--hours", metavar="RANGES", help='local hours backups may start, e.g. "8-18" ("any")')
        parser.add_argument("--days", metavar="RANGES", help='weekdays backups may start, e.g. "mon-fri" ("any")')
        parser.add_argument("--bandwidth-active", metavar="RATE", help="bytes/s while the user is active (0: none)")
        parser.add_argument("--bandwidth-away", metavar="RATE", help="bytes/s while the user is away (0: none)")
        parser.add_argument("--cpu-threads", type=int, metavar="N")
        parser.add_argument("--nice", type=int, metavar="N", help="process niceness 0-19")
        parser.add_argument("--version-interval", type=int, metavar="SECONDS",
                            help="shortest time between two versions of a changed file")
        parser.add_argument("--vm-image-max-bytes", type=int, metavar="BYTES")
        parser.add_argument("--stale-days", type=int, metavar="N",
                            help="alert the administrators after N days without a completed backup (0: never)")
        parser.add_argument("--reset", action="store_true", help="drop this override: inherit everything")

    def handle(self, *args, **options):
        organization = Organization.objects.filter(Q(name=options["org"]) | Q(slug=options["org"])).first()
        if organization is None:
            raise CommandError(f"No organization named {options['org']!r}")
        group = device = None
        if options["group"]:
            group = Group.objects.filter(organization=organization, name=options["group"]).first()
            if group is None:
                raise CommandError(f"No group {options['group']!r} in {organization.name}")
        if options["device"]:
            device = Device.objects.filter(organization=organization, uuid=_uuid(options["device"])).first()
            if device is None:
                raise CommandError(f"No device {options['device']!r} in {organization.name}")
        label = "manage.py policy"
        if options["reset"]:
            policy_reset(organization=organization, group=group, device=device, actor_label=label)
        else:
            changes = self._changes(options)
            try:
                policy_set(organization=organization, group=group, device=device, changes=changes, actor_label=label)
            except ValidationError as error:
                raise CommandError("; ".join(error.messages)) from None
        row = BackupPolicy.objects.filter(organization=organization, group=group, device=device).first()
        effective = (policy_effective(device=device) if device
                     else policy_effective_for_scope(organization=organization, group=group))
        scope = {"organization": organization.name, "group": group.name if group else None,
                 "device": str(device.uuid) if device else None}
        self.stdout.write(json.dumps({"scope": scope, "override": policy_overrides(row) if row else {},
                                      "effective": effective}, indent=2))

    def _changes(self, options) -> dict:
        changes: dict = {}
        if options["include"]:
            changes["include"] = options["include"]
        if options["exclude"]:
            changes["exclude"] = options["exclude"]
        if options["no_default_excludes"]:
            changes["default_excludes"] = False
        simple = {"interval": "interval_seconds", "cpu_threads": "cpu_threads", "nice": "nice",
                  "version_interval": "version_interval_seconds", "vm_image_max_bytes": "vm_image_max_bytes",
                  "stale_days": "stale_days"}
        for option, field in simple.items():
            if options[option] is not None:
                changes[field] = options[option]
        if options["hours"] is not None:
            changes["allowed_hours"] = _ranges(options["hours"], None, 23)
        if options["days"] is not None:
            changes["allowed_days"] = _ranges(options["days"], DAYS, 6)
        for option in ("bandwidth_active", "bandwidth_away"):
            if options[option] is not None:
                changes[option] = _bytes(options[option])
        return changes


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a device UUID") from None
