"""Console sign-in."""
from django.contrib.auth import views as auth_views
from django.core.exceptions import NON_FIELD_ERRORS

from console.forms import EmailLoginForm


class LoginView(auth_views.LoginView):
    template_name = "console/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
        return response

