"""Schemathesis against the live OpenAPI schema, in process: every operation, a bounded budget,
as an anonymous client and as a listener. No answer may be a 5xx, every answer must match the
schema (status codes, bodies, content types)."""

import hypothesis
import pytest
import schemathesis
from celery.app.task import Task
from django.core import signals
from django.db import close_old_connections
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application

MAX_EXAMPLES = 12  # per operation and client; the whole run stays within a few minutes on 2 cores

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
# What a client relies on: no 5xx, and every answer documented (status code, body, content type,
# headers). Schemathesis's stricter default checks about requests (a schema-valid request may still
# be refused by a rule the schema cannot express: a taken username, a weak password) are not ours.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]

FUZZ = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)


@pytest.fixture
def live_app(db, model_version, track_factory, monkeypatch):
    """The WSGI app over the test database, with a few tracks to find."""
    for _ in range(3):
        track_factory()
    # As Django's test client does: a finished request must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    sent = []
    # Messages a request would send to workers are recorded, not sent: no worker runs here, and a
    # message left in a shared broker would be taken by a later test's worker.
    monkeypatch.setattr(Task, "apply_async", lambda self, *args, **kwargs: sent.append(self.name))
    yield sent
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def listener_token(user):
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    return token.key


@schema.parametrize()
@FUZZ
def test_as_anonymous_every_operation_answers_within_its_schema_and_never_5xx(case, live_app):
    case.call_and_validate(checks=CHECKS)


@schema.parametrize()
@FUZZ
def test_as_a_listener_every_operation_answers_within_its_schema_and_never_5xx(case, live_app, listener_token):
    case.headers = {**(case.headers or {}), "Authorization": f"Token {listener_token}"}
    case.call_and_validate(checks=CHECKS)
