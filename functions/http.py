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

    Invalid settings or unreachable storage answer 503 naming the cause (never a secret), not a bare 500.
    """
    from shared.runtime import process_runtime
    from shared.status_page import status_http

    wants_html = req.params.get("format") == "html" or (
        "text/html" in req.headers.get("accept", "") and req.params.get("format") != "json"
    )
    answer = status_http(process_runtime, wants_html)
    return func.HttpResponse(answer.body, status_code=answer.status_code, mimetype=answer.mimetype, charset="utf-8")
