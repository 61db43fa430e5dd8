"""The backup-policy form of the console: every field `manage.py policy` sets, as text a person
types (“15m”, “8-18”, “mon-fri”, “5M”), each with an “inherit” box that clears the override.

The form only reads and writes text; archives/policies.py validates the values again and is the
only writer."""
import re

from django import forms

from archives.policies import POLICY_FIELDS

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DURATION = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_RATE = {"": 1, "k": 1000, "m": 1000 ** 2, "g": 1000 ** 3}

# name -> (label, kind, help)
FIELDS = {
    "include": ("Backup selection", "lines", "One path per line; ~ is the user's home (e.g. ~, /srv/data)."),
    "exclude": ("Exclusions", "lines", "One glob per line, e.g. *.iso or ~/Downloads; a pattern without / "
                                       "matches a file or folder name anywhere."),
    "default_excludes": ("Haven's default exclusions", "bool", "Caches, temporary files, node_modules, trash…"),
    "vm_image_max_bytes": ("Largest virtual machine image", "size", "Bigger VM images are excluded, e.g. 1G "
                                                                     "(K, M, G are powers of 1024)."),
    "interval_seconds": ("Back up every", "duration", "e.g. 15m, 1h, 900 (seconds)."),
    "allowed_hours": ("Hours backups may start", "hours", "Local hours, e.g. 8-18 or 0-6,20-23; any: no limit."),
    "allowed_days": ("Days backups may start", "days", "e.g. mon-fri or sat,sun; any: no limit."),
    "bandwidth_active": ("Bandwidth while the user is active", "rate", "Bytes per second, e.g. 5M or 500k "
                                                                        "(powers of 1000); 0: no limit."),
    "bandwidth_away": ("Bandwidth while the user is away", "rate", "Bytes per second; 0: no limit."),
    "cpu_threads": ("CPU threads", "int", "Threads the agent uses to read and encrypt (1-64)."),
    "nice": ("CPU priority (nice)", "int", "0 (normal) to 19 (lowest)."),
    "version_interval_seconds": ("Version frequency", "duration", "Shortest time between two versions of a "
                                                                  "changed file, e.g. 1h; 0: every backup."),
    "stale_days": ("Alert when a device has not backed up for", "int", "Days without a completed backup "
                                                                       "before administrators are alerted; 0: never."),
}
assert tuple(FIELDS) == POLICY_FIELDS


def _amount(text: str, units: dict, what: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([a-z]?)\s*(?:i?b)?(?:/s)?\s*", text.lower())
    if not match or match[2] not in units:
        raise forms.ValidationError(f"Not {what}: give a number, optionally followed by "
                                    f"{', '.join(u for u in units if u)}.")
    return int(match[1]) * units[match[2]]


def _ranges(text: str, names: list[str] | None, high: int) -> list[int]:
    if text.strip().lower() in ("", "any"):
        return []
    result: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        bounds = part.split("-")
        try:
            numbers = [names.index(b) if names and b in names else int(b) for b in bounds]
        except ValueError:
            raise forms.ValidationError(f"Cannot read {part!r}.") from None
        if len(numbers) not in (1, 2) or any(not 0 <= n <= high for n in numbers) or numbers[0] > numbers[-1]:
            raise forms.ValidationError(f"{part!r} is not a range within 0-{high}.")
        result.update(range(numbers[0], numbers[-1] + 1))
    return sorted(result)


def parse(kind: str, text: str):
    text = text.strip()
    if kind == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if kind == "bool":
        if text not in ("yes", "no"):
            raise forms.ValidationError("Choose yes or no.")
        return text == "yes"
    if not text:
        raise forms.ValidationError("Give a value, or tick “inherit”.")
    if kind == "duration":
        return _amount(text, _DURATION, "a duration")
    if kind == "size":
        return _amount(text, _SIZE, "a size")
    if kind == "rate":
        return _amount(text, _RATE, "a rate")
    if kind == "hours":
        return _ranges(text, None, 23)
    if kind == "days":
        return _ranges(text, DAYS, 6)
    try:
        return int(text)
    except ValueError:
        raise forms.ValidationError("Give a whole number.") from None


def _compact(values: list[int], names: list[str] | None) -> str:
    if not values:
        return "any"
    spans, start = [], values[0]
    for previous, current in zip(values, values[1:] + [None], strict=True):
        if current is None or current != previous + 1:  # a span ends here
            spans.append((start, previous))
            start = current
    label = (lambda n: names[n]) if names else str
    return ",".join(label(a) if a == b else f"{label(a)}-{label(b)}" for a, b in spans)


def _with_unit(value: int, units: dict, upper: bool = True) -> str:
    for unit, factor in sorted(units.items(), key=lambda item: -item[1]):
        if unit and value and value % factor == 0:
            return f"{value // factor}{unit.upper() if upper and unit != 'k' else unit}"
    return str(value)


def as_text(kind: str, value) -> str:
    """A value as the form shows it (and parses it back)."""
    if value is None:
        return ""
    if kind == "lines":
        return "\n".join(value)
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "duration":
        return _with_unit(value, {k: v for k, v in _DURATION.items() if k not in ("", "s")}, upper=False)
    if kind == "size":
        return _with_unit(value, _SIZE)
    if kind == "rate":
        return _with_unit(value, _RATE)
    if kind == "hours":
        return _compact(value, None)
    if kind == "days":
        return _compact(value, DAYS)
    return str(value)


class PolicyForm(forms.Form):
    """One text field and one “inherit” box per policy field; `changes()` gives what to save."""

    def __init__(self, *args, sources=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.sources = {source.name: source for source in sources}
        for name, (label, kind, help_text) in FIELDS.items():
            source = self.sources.get(name)
            own = source.own if source else None
            if kind == "lines":
                field = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=200_000)
            elif kind == "bool":
                field = forms.ChoiceField(choices=[("yes", "yes"), ("no", "no")])
            else:
                field = forms.CharField(max_length=100)
            field.required, field.label, field.help_text = False, label, help_text
            inherited = source.inherited if source else None
            field.initial = as_text(kind, own if own is not None else inherited)
            self.fields[name] = field
            self.fields[f"{name}__inherit"] = forms.BooleanField(required=False, initial=own is None,
                                                                 label="inherit")

    def clean(self):
        data = super().clean()
        self.parsed = {}
        for name, (_, kind, _) in FIELDS.items():
            if data.get(f"{name}__inherit"):
                self.parsed[name] = None
                continue
            try:
                self.parsed[name] = parse(kind, data.get(name) or "")
            except forms.ValidationError as invalid:
                self.add_error(name, invalid)
        if self.parsed.get("include") == []:
            self.add_error("include", "Give at least one path, or tick “inherit”.")
        return data

    def changes(self) -> dict:
        """Only the fields whose override differs from what the scope has now."""
        current = {name: (self.sources[name].own if name in self.sources else None) for name in FIELDS}
        return {name: value for name, value in self.parsed.items() if value != current[name]}

    def rows(self) -> list[dict]:
        """What the template lays out: each field with its inherit box and its source."""
        return [{"field": self[name], "inherit": self[f"{name}__inherit"], "source": self.sources.get(name),
                 "kind": FIELDS[name][1],
                 "effective": as_text(FIELDS[name][1], self.sources[name].value) if name in self.sources else ""}
                for name in FIELDS]
