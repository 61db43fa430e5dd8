from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm

from accounts.forms import ThrottledLoginMixin
from accounts.models import Role
from accounts.people import USER_SORTS


class EmailLoginForm(ThrottledLoginMixin, AuthenticationForm):
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}))


class PrivateKeystoreForm(forms.Form):
    """Seed 004: the organization's Vault address, its CA chain and Haven's client certificate."""

    address = forms.URLField(label="Vault address", max_length=300, help_text="https://vault.example.com:8200")
    ca_pem = forms.CharField(label="CA chain (PEM text)", widget=forms.Textarea(attrs={"rows": 6}), max_length=200_000,
                             help_text="Paste the text of the PEM file of the CA that signed your Vault's TLS "
                                       "certificate (-----BEGIN CERTIFICATE----- ...), not a file name.")
    pkcs12 = forms.FileField(label="Client certificate (PKCS12, at most 5 MB)")
    password = forms.CharField(label="PKCS12 password", widget=forms.PasswordInput, max_length=1000)
    cert_role = forms.RegexField(label="Login entry (auth/cert/certs/…)", regex=r"^haven-[A-Za-z0-9_-]+$",
                                 initial="haven-initial", max_length=100)

    def clean_pkcs12(self):
        upload = self.cleaned_data["pkcs12"]
        if upload.size > 5 * 1024 * 1024:
            raise forms.ValidationError("The PKCS12 file is larger than 5 MB.")
        return upload.read()


class MigrationForm(forms.Form):
    target = forms.ChoiceField(choices=[("private", "the private keystore"), ("haven", "Haven's keystore")])
    keep_source = forms.BooleanField(required=False, label="Keep the source copies",
                                     help_text="By default the copies in Haven's keystore are deleted once every key "
                                               "is verified at the target.")


class SamlSettingsForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Single sign-on is on")
    metadata_file = forms.FileField(required=False, label="IdP metadata (XML file)")
    metadata_url = forms.URLField(required=False, label="…or IdP metadata URL", max_length=500)
    attribute_email = forms.CharField(required=False, max_length=200, label="Email attribute",
                                      help_text="Empty: the NameID is the email address.")
    attribute_name = forms.CharField(required=False, max_length=200, label="Name attribute")
    attribute_groups = forms.CharField(required=False, max_length=200, label="Groups attribute")
    jit_enabled = forms.BooleanField(required=False, label="Create unknown users at first sign-in")

    def clean_metadata_file(self):
        upload = self.cleaned_data.get("metadata_file")
        if upload and upload.size > 1024 * 1024:
            raise forms.ValidationError("The metadata file is larger than 1 MB.")
        return upload.read().decode("utf-8", errors="replace") if upload else ""


# --- fleet: the device list's filters and bulk actions ---------------------------------------

DEVICE_SORT_CHOICES = [(key, key) for key in ("name", "user", "os", "last_seen", "last_backup", "size")]


class DeviceFilterForm(forms.Form):
    """The device list's query string: search, health bucket, authorization, sort, page."""

    q = forms.CharField(required=False, max_length=200, strip=True, label="Search")
    health = forms.ChoiceField(required=False, label="Backup health", choices=[
        ("", "Any health"), ("recent", "< 24 hours"), ("days", "1–3 days"), ("stale", "> 3 days"), ("never", "Never")])
    authorized = forms.ChoiceField(required=False, label="Authorization", choices=[
        ("", "Authorized or not"), ("yes", "Authorized"), ("no", "Deauthorized")])
    sort = forms.ChoiceField(required=False, choices=DEVICE_SORT_CHOICES)
    dir = forms.ChoiceField(required=False, choices=[("asc", "asc"), ("desc", "desc")])
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


class DeviceBulkForm(forms.Form):
    """Checked rows of the device list (at most 500 at once)."""

    devices = forms.MultipleChoiceField(required=True, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any UUID may be posted; the access helper decides which are the actor's.
        self.fields["devices"].valid_value = lambda value: True

    def clean_devices(self):
        values = self.cleaned_data["devices"]
        if len(values) > 500:
            raise forms.ValidationError("Select at most 500 devices at once.")
        return [forms.UUIDField().clean(value) for value in values]


class DeviceRunsPageForm(forms.Form):
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)
# --- people and accounts (console/views/users.py, console/views/account.py) ---------------------

class TotpCodeForm(forms.Form):
    code = forms.RegexField(label="Code from your authenticator app", regex=r"^\s*(\d\s*){6}$", max_length=20,
                            error_messages={"invalid": "Enter the six digits your authenticator app shows."},
                            widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                                          "autofocus": True}))

    def clean_code(self):
        return "".join(self.cleaned_data["code"].split())


class UserCreateForm(forms.Form):
    email = forms.EmailField(max_length=254)
    full_name = forms.CharField(max_length=200, required=False, label="Name")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.USER)
    password = forms.CharField(required=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                               max_length=200, label="Initial password",
                               help_text="Leave empty for people who sign in through single sign-on only.")

    def clean_password(self):
        password = self.cleaned_data["password"]
        if password:
            password_validation.validate_password(password)
        return password


class UserRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class UserSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200)
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in USER_SORTS])
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


class RequireAdminMfaForm(forms.Form):
    require_admin_mfa = forms.BooleanField(required=False, label="Require two-factor authentication for administrators")
# --- web restores and the audit log (console/views/restores.py, console/views/audit.py) ----------

class _LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs):
        # step=1: seconds are allowed, so a time shown to the second still submits
        super().__init__(format="%Y-%m-%dT%H:%M:%S", attrs={"step": "1"}, **kwargs)


_LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]


class BrowseForm(forms.Form):
    """A point in time (server time, UTC; empty: now) and a folder of the archive."""

    at = forms.DateTimeField(required=False, label="Point in time (UTC)", input_formats=_LOCAL_FORMATS,
                             widget=_LocalDateTimeInput())
    path = forms.CharField(required=False, max_length=4096, initial="/")

    def clean_path(self):
        path = self.cleaned_data.get("path") or "/"
        if not path.startswith("/"):
            raise forms.ValidationError("Give an absolute path, starting with /.")
        return path


class RestoreRequestForm(forms.Form):
    at = forms.DateTimeField(required=False, input_formats=_LOCAL_FORMATS + ["%Y-%m-%dT%H:%M:%S%z"])
    paths = forms.MultipleChoiceField(required=True, error_messages={"required": "Select files or folders to restore."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any path the browser sends is a candidate; restore_paths_parse validates them.
        self.fields["paths"].choices = [(p, p) for p in self.data.getlist("paths")] if hasattr(self.data, "getlist") else []


class RestoreApprovalForm(forms.Form):
    required = forms.BooleanField(required=False, label="A second administrator must approve restores of another "
                                                        "user's files")


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=254)
    action = forms.CharField(required=False, max_length=64)
    target = forms.CharField(required=False, max_length=254)
    since = forms.DateTimeField(required=False, label="From (UTC)", input_formats=_LOCAL_FORMATS,
                                widget=_LocalDateTimeInput())
    until = forms.DateTimeField(required=False, label="To (UTC)", input_formats=_LOCAL_FORMATS,
                                widget=_LocalDateTimeInput())
    page = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)


class PushRestoreForm(forms.Form):
    """A push restore: the archive's files (at a point in time, some paths) into a folder of a
    device of the organization (archives/push_restores.py validates the rest)."""

    at = forms.DateTimeField(required=False, label="Point in time (UTC)", input_formats=_LOCAL_FORMATS
                             + ["%Y-%m-%dT%H:%M:%S%z"], widget=_LocalDateTimeInput(), help_text="Empty: now.")
    paths = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}), max_length=200_000,
                            help_text="Absolute paths in the archive, one per line. Empty: everything.")
    target_device = forms.ChoiceField(label="Target device")
    target_path = forms.CharField(max_length=4096, label="Target folder",
                                  help_text="An absolute folder on the target; files go under their original paths.")

    def __init__(self, *args, devices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target_device"].choices = [(str(d.uuid), f"{d.name} ({d.owner.email})") for d in devices]

    def clean_paths(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["paths"].splitlines() if line.strip()]
