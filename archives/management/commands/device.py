"""manage.py device list --org NAME [--health recent|days|stale|never] [--search TEXT]
manage.py device deauthorize|reauthorize|backup-now --org NAME --device UUID

The console's device actions for operators and scripts: the same services (audited, with the
system as the actor) and the same health buckets as the device list."""
import csv
import uuid

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Device, Organization, Role, User
from accounts.services import device_deauthorize, device_reauthorize
from archives import fleet_selectors as fleet
from archives.device_status import device_backup_now_request


class Command(BaseCommand):
    help = "List an organization's devices with their backup health, or deauthorize/reauthorize/back up one."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "deauthorize", "reauthorize", "backup-now"])
        parser.add_argument("--org", required=True)
        parser.add_argument("--device", help="the device's UUID (for the actions)")
        parser.add_argument("--health", choices=list(fleet.HEALTH_LABELS), default="")
        parser.add_argument("--search", default="")

    def handle(self, *args, action, org, device, health, search, **options):
        organization = Organization.objects.filter(name=org).first()
        if organization is None:
            raise CommandError(f"no organization named {org!r}")
        # Reads go through the same scoping as the console, as a (transient) org-wide viewer.
        viewer = User(organization=organization, role=Role.ORG_ADMIN)
        if action == "list":
            writer = csv.writer(self.stdout)
            writer.writerow(["uuid", "name", "user", "os", "authorized", "last_complete_backup", "health",
                             "stored_bytes"])
            for row in fleet.devices_filtered(viewer, search=search, health=health).iterator(chunk_size=2000):
                writer.writerow([row.uuid, row.name, row.owner.email, row.os, "yes" if row.authorized else "no",
                                 row.last_backup.isoformat() if row.last_backup else "", row.health,
                                 row.stored_bytes])
            return
        try:
            target = Device.objects.get(organization=organization, uuid=uuid.UUID(device or ""))
        except (ValueError, Device.DoesNotExist):
            raise CommandError(f"no device {device!r} in {org!r}") from None
        label = "manage.py device"
        if action == "deauthorize":
            device_deauthorize(device=target, actor=None, actor_label=label)
        elif action == "reauthorize":
            device_reauthorize(device=target, actor=None, actor_label=label)
        else:
            device_backup_now_request(device=target, actor=None, actor_label=label)
        self.stdout.write(f"{target.name}: {action} done")
