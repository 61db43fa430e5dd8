"""SCIM 2.0 endpoints under /scim/v2/; the names are django-scim2's (its adapters reverse them)."""
from django.urls import re_path

from console.scim import views

app_name = "scim"
urlpatterns = [
    re_path(r"^$", views.NotFoundView.as_view(), name="root"),
    re_path(r"^\.search/?$", views.RootSearchView.as_view(), name="search"),
    re_path(r"^Users/\.search/?$", views.UserSearchView.as_view(), name="users-search"),
    re_path(r"^Users(?:/(?P<uuid>[^/]+))?/?$", views.UsersView.as_view(), name="users"),
    re_path(r"^Groups/\.search/?$", views.GroupSearchView.as_view(), name="groups-search"),
    re_path(r"^Groups(?:/(?P<uuid>[^/]+))?/?$", views.GroupsView.as_view(), name="groups"),
    re_path(r"^ServiceProviderConfig/?$", views.ServiceProviderConfigView.as_view(), name="service-provider-config"),
    re_path(r"^ResourceTypes(?:/(?P<uuid>[^/]+))?/?$", views.ResourceTypesView.as_view(), name="resource-types"),
    re_path(r"^Schemas(?:/(?P<uuid>[^/]+))?/?$", views.SchemasView.as_view(), name="schemas"),
    # Bulk is announced as unsupported; /Me needs a user identity, and tokens belong to an org.
    re_path(r"^(?:Bulk|Me)/?$", views.HavenScimView.as_view(implemented=False), name="bulk"),
    re_path(r"^.*$", views.NotFoundView.as_view(), name="not-found"),
]
