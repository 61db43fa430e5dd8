"""manage.py quota --org NAME [--user EMAIL] [--set SIZE|none] [--soft-percent N]

Show storage used against the quota (the organization's, or one user's), or set it: SIZE such as
500G or 2TiB, `none` for no quota. A block upload that would pass a hard quota is refused with
409 quota_exceeded; past --soft-percent of it (default 90) an alert warns the administrators."""
from django.core.management.base import BaseCommand, CommandError

from archives.management.commands._safeguards import organization_named, size_parse, user_of
from archives.quotas import org_quota_set, org_usage_of, user_quota_set, user_usage_of

LABEL = "manage.py quota"


class Command(BaseCommand):
    help = "Show or set the organization's or a user's storage quota."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, metavar="NAME")
        parser.add_argument("--user", metavar="EMAIL")
        parser.add_argument("--set", dest="size", metavar="SIZE", help="e.g. 500G, 2TiB, or none")
        parser.add_argument("--soft-percent", type=int, dest="soft_percent", help="warn above this share (organization)")

    def handle(self, *args, org, user, size, soft_percent, **options):
        organization = organization_named(org)
        target = user_of(organization, user) if user else None
        try:
            if target is not None and size is not None:
                user_quota_set(user=target, actor=None, quota_bytes=size_parse(size), actor_label=LABEL)
            elif target is None and (size is not None or soft_percent is not None):
                current = org_usage_of(organization).quota
                org_quota_set(organization=organization, actor=None, actor_label=LABEL, soft_percent=soft_percent,
                              quota_bytes=size_parse(size) if size is not None else current)
        except ValueError as error:  # ValidationError too
            raise CommandError(str(error)) from None
        usage = user_usage_of(target) if target is not None else org_usage_of(organization)
        who = target.email if target is not None else organization.name
        quota = "none" if usage.quota is None else f"{usage.quota} bytes ({usage.percent:.1f} % used)"
        self.stdout.write(f"{who}: {usage.used} bytes used, quota {quota}, {usage.state}")
