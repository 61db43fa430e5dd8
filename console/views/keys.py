"""Key-access history and keystore settings."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render

from console.forms import MigrationForm, PrivateKeystoreForm
from console.views.common import require_admin
from keystore.migration import MigrationRefused, keystore_migration_start
from keystore.private_keystores import PrivateKeystoreInvalid, keystore_overview, private_keystore_configure
from keystore.selectors import key_accesses_visible_to, keystore_settings_of
from keystore.tasks import keystore_migrate_task
from keystore.vault import keystore_status


@login_required
def key_access_history(request):
    """Users see who touched their own key and why; administrators see their organization's."""
    accesses = key_accesses_visible_to(request.user).select_related("subject")[:500]
    return render(request, "console/key_access.html", {"accesses": accesses})


@login_required
def keystore_settings(request):
    """Where the organization's keys live: Haven's keystore, or its own Vault (seed 004)."""
    require_admin(request.user)
    organization = request.user.organization
    form, migration_form = PrivateKeystoreForm(), MigrationForm()
    if request.method == "POST" and request.POST.get("action") == "configure":
        form = PrivateKeystoreForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            try:
                private_keystore_configure(organization=organization, actor=request.user, address=data["address"],
                                           ca_pem=data["ca_pem"], pkcs12=data["pkcs12"], password=data["password"],
                                           cert_role=data["cert_role"])
                messages.success(request, "Haven logged in to your keystore with the uploaded certificate.")
                return redirect("console:keystore")
            except PrivateKeystoreInvalid as invalid:
                form.add_error(None, str(invalid))
    elif request.method == "POST" and request.POST.get("action") == "migrate":
        migration_form = MigrationForm(request.POST)
        if migration_form.is_valid():
            try:
                migration = keystore_migration_start(organization=organization,
                                                     target=migration_form.cleaned_data["target"],
                                                     keep_source=migration_form.cleaned_data["keep_source"],
                                                     actor_label=request.user.email)
                transaction.on_commit(lambda: keystore_migrate_task.delay(migration.pk))
                messages.success(request, "The migration started; keys move one at a time.")
                return redirect("console:keystore")
            except MigrationRefused as refused:
                migration_form.add_error(None, str(refused))
    status_code = 400 if request.method == "POST" else 200
    return render(request, "console/keystore.html", {
        "form": form, "migration_form": migration_form, "haven_status": keystore_status(),
        **keystore_settings_of(organization), **keystore_overview(organization),
    }, status=status_code)

