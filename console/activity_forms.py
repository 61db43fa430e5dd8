"""Forms of the console's file-activity pages (search, thresholds, watch list, SIEM export)."""
from django import forms

from activity.models import DetectionSettings, EventCategory, EventType, ExportTarget, Vector
from console.forms import _LOCAL_FORMATS, _LocalDateTimeInput


def _blank(choices):
    return [("", "any"), *choices]


class EventSearchForm(forms.Form):
    user = forms.CharField(required=False, max_length=254, label="User (email contains)")
    device = forms.CharField(required=False, max_length=200, label="Device (name contains)")
    path = forms.CharField(required=False, max_length=500, label="Path contains")
    file_name = forms.CharField(required=False, max_length=255, label="File name (exact)")
    sha256 = forms.RegexField(required=False, regex=r"^[0-9a-fA-F]{64}$", label="SHA-256",
                              error_messages={"invalid": "A SHA-256 is 64 hexadecimal characters."})
    vector = forms.ChoiceField(required=False, choices=_blank(Vector.choices))
    category = forms.ChoiceField(required=False, choices=_blank(EventCategory.choices))
    event_type = forms.ChoiceField(required=False, choices=_blank(EventType.choices), label="Event")
    since = forms.DateTimeField(required=False, label="From (UTC)", input_formats=_LOCAL_FORMATS,
                                widget=_LocalDateTimeInput())
    until = forms.DateTimeField(required=False, label="To (UTC)", input_formats=_LOCAL_FORMATS,
                                widget=_LocalDateTimeInput())
    cursor = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)

    def clean_sha256(self):
        return self.cleaned_data["sha256"].lower()

    def clean_path(self):
        path = self.cleaned_data["path"]
        if path and len(path) < 3:  # a trigram index needs three characters to narrow anything
            raise forms.ValidationError("Give at least 3 characters of the path.")
        return path


class DetectionSettingsForm(forms.ModelForm):
    class Meta:
        model = DetectionSettings
        fields = ["removable_media_mb", "window_minutes", "sensitive_patterns", "archive_exfil_minutes",
                  "mass_deletion_count", "mass_encryption_count", "watch_on_scim_deactivation"]
        widgets = {"sensitive_patterns": forms.Textarea(attrs={"rows": 6})}

    def clean_window_minutes(self):
        minutes = self.cleaned_data["window_minutes"]
        if not 1 <= minutes <= 24 * 60:
            raise forms.ValidationError("A window is 1 to 1440 minutes.")
        return minutes


class WatchForm(forms.Form):
    email = forms.EmailField(label="Person's email")
    reason = forms.CharField(required=False, max_length=300)


class ExportTargetForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=ExportTarget.Kind.choices)
    payload = forms.ChoiceField(choices=ExportTarget.Payload.choices, initial="json")
    host = forms.CharField(required=False, max_length=253, help_text="Syslog collector host")
    port = forms.IntegerField(required=False, min_value=1, max_value=65535, help_text="6514 for TLS")
    tls = forms.BooleanField(required=False, initial=True, label="Syslog over TLS")
    ca_pem = forms.CharField(required=False, max_length=200_000, widget=forms.Textarea(attrs={"rows": 4}),
                             label="Collector's CA (PEM text; empty = system trust store)")
    url = forms.CharField(required=False, max_length=500, label="Webhook URL (https://)")
    include_events = forms.BooleanField(required=False, label="Export every event too, not only alerts")
