"""Session sign-up, sign-in and sign-out for the pages: the same users as the API (an account made
here has its API token too, made by the same service), and the same `auth` throttle budget."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from catalog import services as catalog_services
from catalog.serializers import RegisterSerializer
from config.errors import ApplicationError
from config.throttling import scope_refusal


def _next_url(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/"


@require_http_methods(["GET", "POST"])
def sign_up(request):
    errors: dict[str, list[str]] = {}
    values = {"username": request.POST.get("username", ""), "email": request.POST.get("email", "")}
    if request.method == "POST":
        refused = scope_refusal(request, "auth")
        if refused is not None:
            return refused
        serializer = RegisterSerializer(data=request.POST)  # the API's rules for a new account
        if serializer.is_valid():
            try:
                user, _token = catalog_services.user_register(**serializer.validated_data)
            except ApplicationError as exc:
                errors = {k: [str(m) for m in v] for k, v in exc.fields.items()} or {"non_field_errors": [exc.message]}
                if "username" in errors and errors["username"] == ["taken"]:
                    errors["username"] = ["That username is taken."]
            else:
                login(request, user)
                return redirect(_next_url(request))
        else:
            errors = {k: [str(m) for m in v] for k, v in serializer.errors.items()}
    context = {"errors": errors, "values": values, "next": _next_url(request)}
    return render(request, "web/sign_up.html", context, status=400 if errors else 200)


@require_http_methods(["GET", "POST"])
def sign_in(request):
    error = ""
    if request.method == "POST":
        refused = scope_refusal(request, "auth")
        if refused is not None:
            return refused
        user = authenticate(
            request, username=request.POST.get("username", ""), password=request.POST.get("password", "")
        )
        if user is not None:
            login(request, user)
            return redirect(_next_url(request))
        error = "Unknown username or wrong password."
    context = {"error": error, "username": request.POST.get("username", ""), "next": _next_url(request)}
    return render(request, "web/sign_in.html", context, status=400 if error else 200)


@require_POST
def sign_out(request):
    logout(request)
    return redirect("web:home")
