"""Reads for the maintenance console page, scoped to one organization."""
from django.db.models import QuerySet

from accounts.models import Organization
from archives.maintenance_models import MaintenanceRun, RetentionPolicy


def maintenance_runs_of_org(organization: Organization, *, limit: int = 50) -> list[MaintenanceRun]:
    return list(MaintenanceRun.objects.filter(organization=organization).select_related("archive__device")
                .order_by("-started_at", "-pk")[:limit])


def retention_overrides_of_org(organization: Organization) -> QuerySet[RetentionPolicy]:
    return (RetentionPolicy.objects.filter(organization=organization).exclude(user=None, device=None)
            .select_related("user", "device").order_by("user__email", "device__name"))
