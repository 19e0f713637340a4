"""health (anonymous) and status (function key): HTTP adapters over shared.status_page."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from shared import SERVICE_NAME, __version__

log = logging.getLogger("functions.http")
bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness and version only: no storage or AtHoc call, so it answers even when those are down."""
    body = json.dumps({"service": SERVICE_NAME, "version": __version__, "status": "alive"})
    return func.HttpResponse(body, status_code=200, mimetype="application/json")


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    """The same report as `python -m shared.cli status --json`; HTML for browsers (Accept or ?format=html).
    With `?employee=ID[&days=N]`: that employee's decisions, as `python -m shared.cli explain ID --json`.

    Invalid settings or unreachable storage answer 503 naming the cause (never a secret), not a bare 500.
    """
    from shared.runtime import process_runtime
    from shared.status_page import status_http

    wants_html = req.params.get("format") == "html" or (
        "text/html" in req.headers.get("accept", "") and req.params.get("format") != "json"
    )
    employee = req.params.get("employee")
    if employee is not None:
        return _explain(req, employee, wants_html)
    answer = status_http(process_runtime, wants_html)
    return func.HttpResponse(answer.body, status_code=answer.status_code, mimetype=answer.mimetype, charset="utf-8")


def _explain(req: func.HttpRequest, employee: str, wants_html: bool) -> func.HttpResponse:
    from shared.explain import explain_http, parse_days
    from shared.runtime import process_runtime

    try:
        days = parse_days(req.params.get("days"))
    except ValueError:
        body = json.dumps({"error": "days must be a positive number"})
        return func.HttpResponse(body, status_code=400, mimetype="application/json")
    if not employee.strip():
        body = json.dumps({"error": "employee must name an employee id"})
        return func.HttpResponse(body, status_code=400, mimetype="application/json")
    code, body, mimetype = explain_http(process_runtime, employee, wants_html, days)
    return func.HttpResponse(body, status_code=code, mimetype=mimetype, charset="utf-8")
