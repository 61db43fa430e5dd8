"""Helpers shared by the console's views."""
from django.core.exceptions import PermissionDenied


def require_admin(user) -> None:
    """Org administrators only; everyone else gets 403 (the pages are reached only from links they see)."""
    if user.role != "org_admin":
        raise PermissionDenied("Only an administrator of the organization may change its settings")

