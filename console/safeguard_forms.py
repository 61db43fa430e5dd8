"""Forms of the console's safeguard pages (quotas, legal holds, retention of departed users,
the mass-change threshold)."""
from django import forms

from archives.quotas import size_parse


class SizeField(forms.CharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=40, required=False, help_text="e.g. 500G, 2TiB; empty: no quota", **kwargs)

    def clean(self, value):
        value = super().clean(value)
        try:
            return size_parse(value or "")
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None


class SafeguardSettingsForm(forms.Form):
    quota = SizeField(label="Organization storage quota")
    quota_soft_percent = forms.IntegerField(min_value=1, max_value=100, label="Warn above (% of a quota)")
    departed_retention_days = forms.IntegerField(min_value=0, max_value=36_500,
                                                 label="Keep a departed user's archives (days)")
    freeze_share_percent = forms.IntegerField(min_value=1, max_value=100,
                                              label="Freeze pruning when a run changes or deletes (% of files)")
    freeze_min_files = forms.IntegerField(min_value=1, max_value=10_000_000, label="…and at least (files)")


class LegalHoldForm(forms.Form):
    email = forms.EmailField(max_length=254, label="User's email")
    reason = forms.CharField(max_length=300, required=False, label="Reason (matter, ticket)")


class UserQuotaForm(forms.Form):
    email = forms.EmailField(max_length=254, label="User's email")
    quota = SizeField(label="Storage quota")
