"""Forms of the console's alert pages: the list's filters and the triage actions."""
from django import forms

from activity.alerts import MAX_NOTE_LENGTH
from activity.models import Alert
from activity.selectors import ANY, ASSIGNEE_NONE, UNRESOLVED, AlertFilters

STATUS_CHOICES = [(UNRESOLVED, "Open or acknowledged"), *Alert.Status.choices, (ANY, "Any status")]


class AlertFilterForm(forms.Form):
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    kind = forms.RegexField(regex=r"^[a-z0-9_.:-]*$", max_length=64, required=False)
    severity = forms.ChoiceField(choices=[("", "Any severity"), *Alert.Severity.choices], required=False)
    assignee = forms.CharField(max_length=40, required=False)
    page = forms.IntegerField(min_value=1, required=False)

    def __init__(self, *args, assignees=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.assignee_choices = [("", "Anyone"), (ASSIGNEE_NONE, "Nobody"), ("me", "Me")] + [
            (str(person.uuid), person.email) for person in assignees]

    def clean_assignee(self):
        value = self.cleaned_data["assignee"]
        if value not in {choice for choice, _ in self.assignee_choices}:
            raise forms.ValidationError("Choose an administrator or security analyst of the organization.")
        return value

    def filters(self, actor) -> AlertFilters:
        data = self.cleaned_data
        assignee = str(actor.uuid) if data["assignee"] == "me" else data["assignee"]
        return AlertFilters(status=data["status"] or UNRESOLVED, kind=data["kind"], severity=data["severity"],
                            assignee=assignee)


class AlertNoteForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=MAX_NOTE_LENGTH, strip=True,
                           label="Note")


class AlertStatusForm(forms.Form):
    note = forms.CharField(max_length=MAX_NOTE_LENGTH, required=False, strip=True)


class AlertAssignForm(forms.Form):
    assignee = forms.CharField(max_length=40, required=False,
                               help_text="A UUID of an administrator or analyst; empty: nobody.")
