from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from console.saml import views

app_name = "saml"
urlpatterns = [
    path("start/", views.sso_start, name="start"),
    path("<uuid:org_id>/login/", views.LoginView.as_view(), name="login"),
    # The IdP posts the response cross-site; its signature, not a CSRF token, authenticates it.
    path("<uuid:org_id>/acs/", csrf_exempt(views.AssertionConsumerView.as_view()), name="acs"),
    path("<uuid:org_id>/metadata/", views.MetadataView.as_view(), name="metadata"),
]
