"""Deployment tokens (DESIGN §11): made here (the token shown once), listed and revoked here."""
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from accounts.deployment import MAX_DAYS, DeploymentTokenInvalid, deployment_token_create, deployment_token_revoke
from accounts.selectors import deployment_token_for_user, deployment_tokens_visible_to, groups_visible_to
from console.views.common import require_admin


class DeploymentTokenForm(forms.Form):
    label = forms.CharField(max_length=100, required=False, help_text="What it is for, e.g. “Intune, Paris office”.")
    days = forms.IntegerField(min_value=1, max_value=MAX_DAYS, initial=7, label="Expires after (days)")
    max_uses = forms.IntegerField(min_value=1, required=False, label="At most (enrollments)",
                                  help_text="Empty: any number until it expires.")
    group = forms.ModelChoiceField(queryset=None, required=False, empty_label="(none)",
                                   help_text="Enrolled users join this group and follow its backup policy.")
    create_users = forms.BooleanField(required=False, label="Create unknown users (verified domains only)")
    allow_existing_keys = forms.BooleanField(
        required=False, label="Also enroll devices of users who already have a key",
        help_text="Their new device receives their key, as a replacement computer does (they are emailed).")

    def __init__(self, *args, actor, **kwargs):
        super().__init__(*args, **kwargs)
        # A group mapped to a role is not offered: joining it would grant the role (accounts/deployment.py).
        self.fields["group"].queryset = groups_visible_to(actor).filter(role="").order_by("name")


@login_required
def deployment_tokens(request):
    """Administrators only: the organization's deployment tokens, a new one shown once."""
    require_admin(request.user)
    form, new_token, status_code = DeploymentTokenForm(actor=request.user), None, 200
    if request.method == "POST" and request.POST.get("action") == "revoke":
        token = deployment_token_for_user(request.user, request.POST.get("token"))
        deployment_token_revoke(token=token, actor=request.user)
        messages.success(request, f"Token {token.token_prefix}… was revoked: it enrolls nothing more.")
        return redirect("console:deployment-tokens")
    if request.method == "POST":
        form = DeploymentTokenForm(request.POST, actor=request.user)
        if form.is_valid():
            fields = form.cleaned_data
            try:
                _, new_token = deployment_token_create(
                    organization=request.user.organization, days=fields["days"], max_uses=fields["max_uses"],
                    group=fields["group"], create_users=fields["create_users"],
                    allow_existing_keys=fields["allow_existing_keys"], label=fields["label"], actor=request.user)
                form = DeploymentTokenForm(actor=request.user)
            except DeploymentTokenInvalid as invalid:
                form.add_error(None, str(invalid))
        if new_token is None:
            status_code = 400
    tokens = deployment_tokens_visible_to(request.user).order_by("revoked_at", "-created_at")
    return render(request, "console/deployment_tokens.html", {
        "form": form, "new_token": new_token, "tokens": tokens, "server": request.build_absolute_uri("/").rstrip("/"),
    }, status=status_code)
