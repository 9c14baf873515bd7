"""Making music: a form for new melodies (and the buttons of a track page, which post to it), a job's
live progress, and your past jobs. Requests are validated by the API's own request serializer and
recorded by the same service (generation.services.generation_job_request)."""

from __future__ import annotations

from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from catalog import selectors as catalog_selectors
from config.throttling import scope_refusal
from generation import selectors as generation_selectors
from generation import services as generation_services
from generation.models import GenerationJob
from generation.serializers import GenerationRequestSerializer
from web.pages import cards_for, page, signed_in, tracks_by_ids
from web.views import long_form_active

# Form fields a generation request may carry, as the API's serializer names them. Which of them the
# sample form shows is read from the serializer, so a field added there (length, meter) appears here.
SAMPLE_OPTIONAL_FIELDS = ("bars", "meter")
SCALAR_FIELDS = (
    "kind",
    "count",
    "temperature",
    "seed",
    "track_id",
    "spread",
    "attribute",
    "amount",
    "bars",
    "meter",
    "prompt_bars",
    "from_bar",
    "to_bar",
)
ACTIVE = (GenerationJob.Status.PENDING, GenerationJob.Status.RUNNING)


def _request_fields() -> dict:
    return GenerationRequestSerializer().fields


def _form_context(request, errors=None, values=None) -> dict:
    fields = _request_fields()
    rated = [r.track for r in catalog_selectors.rating_list_for_user(user=request.user)[:50]]
    choices = (
        rated
        if len(rated) >= 2
        else rated + list(catalog_selectors.track_list().exclude(pk__in=[t.pk for t in rated])[:50])
    )
    return {
        "errors": errors or {},
        "values": values or {"count": 2, "temperature": 0.8},
        # Length and meter only where the active model takes them (the 16-bar VAE refuses them).
        "sample_extras": [name for name in SAMPLE_OPTIONAL_FIELDS if name in fields] if long_form_active() else [],
        "meters": list(fields["meter"].choices) if "meter" in fields else [],
        "count_max": fields["count"].max_value,
        "track_choices": choices,
        "first": request.GET.get("a", ""),
    }


@require_http_methods(["GET", "POST"])
@signed_in
@page
def make(request):
    if request.method == "GET":
        return render(request, "web/make.html", _form_context(request))
    refused = scope_refusal(request, "generation")  # the API's generation budget
    if refused is not None:
        return refused
    data = {name: request.POST[name] for name in SCALAR_FIELDS if request.POST.get(name, "") != ""}
    track_ids = [t for t in request.POST.getlist("track_ids") if t != ""]
    if track_ids:
        data["track_ids"] = track_ids
    serializer = GenerationRequestSerializer(data=data)
    if not serializer.is_valid():
        errors = {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in serializer.errors.items()}
        return render(request, "web/make.html", _form_context(request, errors, request.POST), status=400)
    params = dict(serializer.validated_data)
    kind = params.pop("kind")
    created = generation_services.generation_job_request(owner=request.user, kind=kind, params=params)
    return redirect("web:job", job_id=created.job.pk)


@require_GET
@signed_in
def jobs(request):
    mine = generation_selectors.generation_job_list(user=request.user).filter(owner=request.user)[:100]
    return render(request, "web/jobs.html", {"jobs": mine})


@require_GET
@signed_in
@page
def job_page(request, job_id: int):
    job = generation_selectors.generation_job_get(user=request.user, job_id=job_id)
    tracks = tracks_by_ids(sorted(t.pk for t in job.tracks.all()))
    parents = tracks_by_ids(job.params.get("track_ids") or [])
    context = {"job": job, "active": job.status in ACTIVE, "cards": cards_for(request.user, tracks), "parents": parents}
    return render(request, "web/job.html", context)
