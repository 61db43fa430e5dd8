"""Web restores in the console (DESIGN §6, issue 9 item 4): pick an archive and a point in time,
browse its tree (each listing is one audited key access), select files and folders, follow the
job's progress, download the zip. A `security_analyst` has no restore entry point: every page
here answers 404 to them, as to anyone who may not see the archive or job."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Role
from archives.models import RestoreJob
from archives.restore_approval import (
    ApprovalRefused,
    restore_approval_required,
    restore_approval_set,
    restore_job_decide,
    restore_may_decide,
)
from archives.restore_results import result_response
from archives.restore_selectors import (
    RestoreResultUnavailable,
    restore_job_for_user,
    restore_jobs_visible_to,
    restore_result_for_user,
)
from archives.restores import (
    RestoreInvalid,
    archive_browse,
    archive_file_versions,
    restore_access_check,
    restore_job_request,
    restore_result_downloaded,
)
from archives.selectors import archive_for_user, archives_visible_to
from console.forms import BrowseForm, RestoreApprovalForm, RestoreRequestForm
from console.views.common import require_admin
from keystore.vault import KeystoreUnavailable

FINISHED = {RestoreJob.Status.DONE, RestoreJob.Status.FAILED, RestoreJob.Status.REJECTED}


def _restorer(user) -> None:
    """No restore page exists for a security analyst (DESIGN §1: no restores, no file names)."""
    if user.role == Role.SECURITY_ANALYST:
        raise Http404("No such page")


def _restorable_archive(user, archive_id):
    _restorer(user)
    archive = archive_for_user(user, archive_id)
    restore_access_check(actor=user, archive=archive)
    return archive


@login_required
@require_GET
def restore_archives(request):
    """The archives this person may restore from: the organization's for administrators and
    restore operators, their own for a user."""
    _restorer(request.user)
    query = request.GET.get("q", "").strip()[:200]
    archives = archives_visible_to(request.user).order_by("user__email", "device__name")
    if query:
        archives = archives.filter(device__name__icontains=query) | archives.filter(user__email__icontains=query)
    page = Paginator(archives, 50).get_page(request.GET.get("page"))
    return render(request, "console/restores/archives.html", {"page": page, "query": query})


def _browse_context(request, archive, form: BrowseForm) -> tuple[dict, int]:
    at, path = form.cleaned_data.get("at") or timezone.now(), form.cleaned_data["path"]
    context = {"archive": archive, "at": at, "path": path, "crumbs": _crumbs(path), "entries": [], "error": ""}
    try:
        context["entries"] = archive_browse(actor=request.user, archive=archive, at=at, prefix=path)
    except RestoreInvalid as invalid:
        context["error"] = str(invalid)
        return context, 400
    except KeystoreUnavailable:
        context["error"] = "The keystore is unavailable, so the archive's names cannot be read now. Try again later."
        return context, 503
    return context, 200


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = [p for p in path.split("/") if p]
    return [("/", "/")] + [(name, "/" + "/".join(parts[:i + 1])) for i, name in enumerate(parts)]


@login_required
@require_GET
def archive_browser(request, archive_id):
    """The tree of one archive at a point in time; htmx asks for the tree alone when navigating."""
    archive = _restorable_archive(request.user, archive_id)
    form = BrowseForm(request.GET or None)
    if request.GET and not form.is_valid():
        return render(request, "console/restores/browser.html", {"archive": archive, "form": form}, status=400)
    if not request.GET:
        form = BrowseForm({"path": "/"})
        form.is_valid()
    context, status = _browse_context(request, archive, form)
    if not form.cleaned_data.get("at"):  # show the moment listed, so a reload or a restore keeps it
        form = BrowseForm({"path": context["path"], "at": context["at"].strftime("%Y-%m-%dT%H:%M:%S")})
        form.is_valid()
    template = "console/restores/_tree.html" if request.htmx else "console/restores/browser.html"
    return render(request, template, {**context, "form": form}, status=status)


@login_required
@require_GET
def file_versions(request, archive_id):
    archive = _restorable_archive(request.user, archive_id)
    path = request.GET.get("path", "")
    try:
        versions = archive_file_versions(actor=request.user, archive=archive, path=path)
    except RestoreInvalid as invalid:
        return render(request, "console/restores/_versions.html", {"error": str(invalid)}, status=400)
    except KeystoreUnavailable:
        return render(request, "console/restores/_versions.html",
                      {"error": "The keystore is unavailable; try again later."}, status=503)
    return render(request, "console/restores/_versions.html",
                  {"archive": archive, "path": path, "versions": list(reversed(versions))})


@login_required
@require_POST
def restore_create(request, archive_id):
    archive = _restorable_archive(request.user, archive_id)
    form = RestoreRequestForm(request.POST)
    if form.is_valid():
        try:
            job = restore_job_request(actor=request.user, archive=archive, at=form.cleaned_data.get("at"),
                                      paths=form.cleaned_data["paths"])
        except RestoreInvalid as invalid:
            form.add_error(None, str(invalid))
        else:
            if job.status == RestoreJob.Status.AWAITING_APPROVAL:
                messages.info(request, "Another administrator must approve this restore before it runs.")
            return redirect("console:restore-job", job_id=job.uuid)
    return render(request, "console/restores/refused.html", {"archive": archive, "form": form}, status=400)


@login_required
@require_GET
def restore_jobs(request):
    """An administrator sees the organization's restores; everyone else their own."""
    _restorer(request.user)
    jobs = restore_jobs_visible_to(request.user).order_by("-created_at", "-id")
    status = request.GET.get("status", "")
    if status in RestoreJob.Status.values:
        jobs = jobs.filter(status=status)
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    return render(request, "console/restores/jobs.html",
                  {"page": page, "status": status, "statuses": RestoreJob.Status.choices})


@login_required
@require_GET
def restore_job(request, job_id):
    """The job and its progress; the progress partial polls itself until the job is finished."""
    _restorer(request.user)
    job = restore_job_for_user(request.user, job_id)
    context = {"job": job, "finished": job.status in FINISHED,
               "downloadable": job.status == RestoreJob.Status.DONE and bool(job.result_key)
               and job.expires_at is not None and job.expires_at > timezone.now(),
               "may_decide": job.status == RestoreJob.Status.AWAITING_APPROVAL
               and restore_may_decide(actor=request.user, job=job)}
    template = "console/restores/_progress.html" if request.htmx else "console/restores/job.html"
    return render(request, template, context)


@login_required
@require_GET
def restore_download(request, job_id):
    _restorer(request.user)
    try:
        job, result = restore_result_for_user(request.user, job_id)
    except RestoreResultUnavailable as gone:
        job = restore_job_for_user(request.user, job_id)
        return render(request, "console/restores/gone.html", {"job": job, "reason": str(gone)}, status=410)
    restore_result_downloaded(actor=request.user, job=job)
    return result_response(result, filename=f"haven-restore-{job.uuid}.zip", content_type="application/zip")


@login_required
@require_POST
def restore_decide(request, job_id, decision):
    """Approve or reject a restore that waits for a second administrator."""
    _restorer(request.user)
    if decision not in ("approve", "reject"):
        raise Http404("No such action")
    job = restore_job_for_user(request.user, job_id)
    try:
        restore_job_decide(actor=request.user, job=job, approve=decision == "approve")
    except ApprovalRefused as refused:
        messages.error(request, str(refused))
        return render(request, "console/restores/job.html", {"job": job, "finished": job.status in FINISHED,
                                                              "refused": str(refused)}, status=403)
    messages.success(request, "Approved: the restore is queued." if decision == "approve" else "Rejected.")
    return redirect("console:restore-job", job_id=job.uuid)


@login_required
def restore_settings(request):
    require_admin(request.user)
    organization = request.user.organization
    form = RestoreApprovalForm(initial={"required": restore_approval_required(organization.pk)})
    if request.method == "POST":
        form = RestoreApprovalForm(request.POST)
        if form.is_valid():
            restore_approval_set(organization=organization, required=form.cleaned_data["required"],
                                 actor=request.user)
            messages.success(request, "Saved.")
            return redirect("console:restore-settings")
    return render(request, "console/restores/settings.html", {"form": form})
