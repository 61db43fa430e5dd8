"""manage.py deploytoken --org NAME [--uses N] [--days N] [--group NAME] [--create-users]
[--allow-existing-keys] [--label TEXT] — print a new deployment token (shown only once);
`--list` shows the organization's tokens, `--revoke UUID` revokes one."""
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accounts.deployment import DeploymentTokenInvalid, deployment_token_create, deployment_token_revoke
from accounts.models import DeploymentToken, Group, Organization
from accounts.selectors import parse_uuid_or_404

LABEL = "manage.py deploytoken"


class Command(BaseCommand):
    help = "Create (and print once), list or revoke an organization's deployment tokens."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME", help="organization name or slug")
        parser.add_argument("--uses", type=int, metavar="N", help="at most N enrollments (default: no cap)")
        parser.add_argument("--days", type=int, default=7, metavar="N", help="expires after N days (default 7)")
        parser.add_argument("--group", metavar="NAME", help="enrolled users join this group (and its policy)")
        parser.add_argument("--create-users", action="store_true",
                            help="create unknown users (only in the organization's verified domains)")
        parser.add_argument("--allow-existing-keys", action="store_true",
                            help="also enroll devices of users who already have a key (they receive it)")
        parser.add_argument("--label", default="", metavar="TEXT", help="what the token is for")
        parser.add_argument("--list", action="store_true", help="list the organization's tokens")
        parser.add_argument("--revoke", metavar="UUID", help="revoke this token")

    def handle(self, *args, **options):
        organization = Organization.objects.filter(Q(name=options["org"]) | Q(slug=options["org"])).first()
        if organization is None:
            raise CommandError(f"No organization named {options['org']!r}")
        if options["list"]:
            return self._list(organization)
        if options["revoke"]:
            try:
                token = DeploymentToken.objects.get(organization=organization,
                                                    uuid=parse_uuid_or_404(options["revoke"]))
            except Exception:
                raise CommandError(f"No deployment token {options['revoke']!r} in {organization.name}") from None
            revoked = deployment_token_revoke(token=token, actor=None, actor_label=LABEL)
            self.stdout.write(f"revoked {token.uuid}" if revoked else f"{token.uuid} was already revoked")
            return None
        group = None
        if options["group"]:
            group = Group.objects.filter(organization=organization, name=options["group"]).first()
            if group is None:
                raise CommandError(f"No group {options['group']!r} in {organization.name}")
        try:
            _, raw = deployment_token_create(
                organization=organization, days=options["days"], max_uses=options["uses"], group=group,
                create_users=options["create_users"], allow_existing_keys=options["allow_existing_keys"],
                label=options["label"], actor_label=LABEL)
        except DeploymentTokenInvalid as invalid:
            raise CommandError(str(invalid)) from None
        self.stdout.write(raw)
        return None

    def _list(self, organization: Organization) -> None:
        for token in DeploymentToken.objects.filter(organization=organization).select_related("group").order_by(
                "-created_at"):
            uses = f"{token.use_count}/{token.max_uses if token.max_uses is not None else '∞'}"
            self.stdout.write(f"{token.uuid}  {token.token_prefix}…  {token.state:9}  uses {uses}  "
                              f"expires {token.expires_at:%Y-%m-%d %H:%M}  group {token.group.name if token.group else '-'}"
                              f"  {'creates users  ' if token.create_users else ''}{token.label}")
