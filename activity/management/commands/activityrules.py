"""manage.py activityrules --org NAME [--removable-mb N] [...] [--watch EMAIL] [--unwatch EMAIL] [--run]
— show or change an organization's detection thresholds and watch list (as the console's pages)."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization, User
from activity.detection import detection_run
from activity.detection_settings import detection_settings_update, watchlist_add, watchlist_remove
from activity.models import WatchedUser

_SWITCH = {"on": True, "off": False}
LABEL = "manage.py activityrules"
OPTIONS = {  # option → (setting, type, help)
    "removable_mb": ("removable_media_mb", int, "MB to removable media per window that raises an alert (0 = off)"),
    "window_minutes": ("window_minutes", int, "window of the volume rules, in minutes"),
    "archive_minutes": ("archive_exfil_minutes", int, "archive then exfiltration within N minutes (0 = off)"),
    "mass_delete": ("mass_deletion_count", int, "deletions per window that raise an alert (0 = off)"),
    "mass_encrypt": ("mass_encryption_count", int, "encrypted-looking rewrites per window (0 = off)"),
}


class Command(BaseCommand):
    help = "Show or change an organization's file-activity detection thresholds and departing-employee watch list."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        for option, (_, kind, text) in OPTIONS.items():
            parser.add_argument("--" + option.replace("_", "-"), dest=option, type=kind, metavar="N", help=text)
        parser.add_argument("--patterns", help="sensitive file-name patterns, comma-separated ('' = off)")
        parser.add_argument("--watch-on-scim-deactivation", choices=sorted(_SWITCH), dest="scim_watch")
        parser.add_argument("--watch", action="append", default=[], metavar="EMAIL", help="add to the watch list")
        parser.add_argument("--unwatch", action="append", default=[], metavar="EMAIL")
        parser.add_argument("--reason", default="", help="why (for --watch)")
        parser.add_argument("--run", action="store_true", help="run the rules over new events now")

    def handle(self, *args, org: str, **options):
        organization = Organization.objects.filter(name=org).first() or Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organization named {org!r}")
        changes = {setting: options[option] for option, (setting, _, _) in OPTIONS.items()
                   if options[option] is not None}
        if options["patterns"] is not None:
            changes["sensitive_patterns"] = "\n".join(p.strip() for p in options["patterns"].split(",") if p.strip())
        if options["scim_watch"]:
            changes["watch_on_scim_deactivation"] = _SWITCH[options["scim_watch"]]
        try:
            config = detection_settings_update(organization=organization, actor=None, actor_label=LABEL, **changes)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        for email in options["watch"]:
            watchlist_add(user=self._user(organization, email), actor=None, source=WatchedUser.Source.COMMAND,
                          reason=options["reason"], actor_label=LABEL)
        for email in options["unwatch"]:
            watchlist_remove(user=self._user(organization, email), actor=None, actor_label=LABEL)
        for option, (setting, _, _) in OPTIONS.items():
            self.stdout.write(f"{option.replace('_', '-')}: {getattr(config, setting)}")
        self.stdout.write(f"patterns: {', '.join(config.patterns()) or '(none)'}")
        self.stdout.write(f"watch-on-scim-deactivation: {'on' if config.watch_on_scim_deactivation else 'off'}")
        watched = WatchedUser.objects.filter(organization=organization).select_related("user")
        self.stdout.write(f"watch list: {', '.join(w.user.email for w in watched) or '(empty)'}")
        if options["run"]:
            self.stdout.write(f"run: {detection_run(organization=organization)}")

    def _user(self, organization: Organization, email: str) -> User:
        user = User.objects.filter(organization=organization, email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user {email!r} in {organization.name}")
        return user
