"""The audit log (issue 9 item 5): administrative actions, sign-ins and restores (accounts
AuditEvent) and every key access (keystore KeyAccess) in one time-ordered view, filtered and
paginated in the database (one UNION query a page), exported as CSV. Administrators only."""
import csv

from django.contrib.auth.decorators import login_required
from django.db.models import CharField, F, Q, TextField, Value
from django.db.models.functions import Cast, Coalesce, Concat
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.selectors import audit_events_visible_to
from console.forms import AuditFilterForm
from console.views.common import require_admin
from keystore.selectors import key_accesses_visible_to

PAGE_SIZE = 50
CSV_MAX_ROWS = 100_000
COLUMNS = ["a_when", "a_source", "a_actor", "a_action", "a_target", "a_detail"]


def _rows(actor, filters: dict):
    """Both logs as rows of the same columns, filtered, newest first (still a lazy query)."""
    text = CharField()
    events = audit_events_visible_to(actor).annotate(
        a_when=F("occurred_at"), a_source=Value("admin", output_field=text), a_actor=F("actor_label"),
        a_action=F("action"),
        a_target=Concat("target_type", Value(" "), Coalesce(Cast("target_uuid", text), Value("")), output_field=text),
        a_detail=Cast("detail", TextField()))
    accesses = key_accesses_visible_to(actor).annotate(
        a_when=F("occurred_at"), a_source=Value("key", output_field=text), a_actor=F("actor_label"),
        a_action=Concat(Value("key."), "purpose", Value("."), "outcome", output_field=text),
        a_target=Concat(Value("key of "), "subject__email", Value(" "), "job", output_field=text),
        a_detail=Cast("detail", TextField()))
    condition = Q()
    if filters.get("actor"):
        condition &= Q(a_actor__icontains=filters["actor"])
    if filters.get("action"):
        condition &= Q(a_action__icontains=filters["action"])
    if filters.get("target"):
        condition &= Q(a_target__icontains=filters["target"])
    if filters.get("since"):
        condition &= Q(a_when__gte=filters["since"])
    if filters.get("until"):
        condition &= Q(a_when__lte=filters["until"])
    events, accesses = events.filter(condition), accesses.filter(condition)
    # .order_by() drops the models' default ordering: SQLite refuses ORDER BY inside a UNION's parts.
    merged = (events.order_by().values(*COLUMNS)
              .union(accesses.order_by().values(*COLUMNS), all=True).order_by("-a_when"))
    return merged, events, accesses


@login_required
@require_GET
def audit_log(request):
    require_admin(request.user)
    form = AuditFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    merged, events, accesses = _rows(request.user, filters)
    if request.GET.get("format") == "csv":
        return _csv(merged)
    total = events.count() + accesses.count()
    pages = max(1, -(-total // PAGE_SIZE))
    number = min(filters.get("page") or 1, pages)
    rows = list(merged[(number - 1) * PAGE_SIZE:number * PAGE_SIZE])
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "console/audit.html", {
        "form": form, "rows": rows, "total": total, "number": number, "pages": pages,
        "previous": number - 1 if number > 1 else None, "next": number + 1 if number < pages else None,
        "query": query.urlencode()}, status=200 if form.is_valid() else 400)


class _Echo:
    def write(self, value):
        return value


def _csv(merged) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(["time (UTC)", "source", "actor", "action", "target", "detail"])
        for row in merged[:CSV_MAX_ROWS].iterator(chunk_size=2000):
            yield writer.writerow([row["a_when"].isoformat(), row["a_source"], row["a_actor"], row["a_action"],
                                   row["a_target"].strip(), row["a_detail"]])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="haven-audit.csv"'
    return response
