"""SCIM 2.0 endpoints under /scim/v2/ (filled in by the SCIM work)."""
urlpatterns: list = []
