"""Forms of the maintenance page: an organization's retention policy and per-user/device overrides."""
from django import forms

from archives.retention import Retention

LABELS = {"keep_all_days": "Keep every version (days)", "daily_days": "Then one a day (days)",
          "weekly_weeks": "Then one a week (weeks)", "monthly_months": "Then one a month (months)",
          "deleted_days": "Deleted files kept (days)"}


class RetentionForm(forms.Form):
    def __init__(self, *args, required: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        for name in Retention.FIELDS:
            self.fields[name] = forms.IntegerField(label=LABELS[name], min_value=0, max_value=100_000,
                                                   required=required)


class RetentionOverrideForm(RetentionForm):
    target = forms.CharField(label="User email or device id", max_length=254)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, required=False, **kwargs)
        self.order_fields(["target", *Retention.FIELDS])
