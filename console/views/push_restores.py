"""Push restores in the console (DESIGN §6): send files of an archive into a folder of a device
of the organization; the target agent restores them and the job page shows its progress live
(the restores pages' htmx progress partial). Who may push is who may restore the archive; the
target is a device the person may see."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.selectors import devices_visible_to
from archives.models import RestoreJob
from archives.push_restores import push_restore_request, push_target_for
from archives.restores import RestoreInvalid
from console.forms import PushRestoreForm
from console.views.restores import _restorable_archive


@login_required
@require_http_methods(["GET", "POST"])
def push_restore_create(request, archive_id):
    """GET: the form. POST from the archive browser (`prefill`): the form with its selection.
    POST: create the job."""
    archive = _restorable_archive(request.user, archive_id)
    devices = devices_visible_to(request.user).filter(authorized=True).order_by("name")
    if request.method == "POST" and "prefill" not in request.POST:
        form = PushRestoreForm(request.POST, devices=devices)
        if form.is_valid():
            data = form.cleaned_data
            try:
                job = push_restore_request(actor=request.user, archive=archive,
                                           target_device=push_target_for(request.user, data["target_device"]),
                                           target_path=data["target_path"], at=data.get("at"), paths=data["paths"])
            except (RestoreInvalid, Http404) as invalid:
                form.add_error(None, str(invalid))
            else:
                if job.status == RestoreJob.Status.AWAITING_APPROVAL:
                    messages.info(request, "Another administrator must approve this restore before it runs.")
                return redirect("console:restore-job", job_id=job.uuid)
        return render(request, "console/restores/push.html", {"archive": archive, "form": form}, status=400)
    initial = {"at": timezone.now().strftime("%Y-%m-%dT%H:%M:%S")}
    if request.method == "POST":  # the browser's selection
        initial = {"at": request.POST.get("at", "")[:40], "paths": "\n".join(request.POST.getlist("paths")[:1000])}
    return render(request, "console/restores/push.html",
                  {"archive": archive, "form": PushRestoreForm(initial=initial, devices=devices)})
