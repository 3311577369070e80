"""HTTP entry point: ``POST /hl7/v2`` (also at the plugin path ``/plugins/hl7/v2``).

The body is one ER7 message or an FHS/BHS batch; the answer is the ACK(s) as
``x-application/hl7-v2+er7``, 200 when every message was accepted (AA), else 422.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhirhub.adapters.hl7.convert.provenance import ER7_MEDIA_TYPE

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

SUMMARY = "Process one HL7 v2 message or an FHS/BHS batch"


def routers(hub: Hub) -> list[APIRouter]:
    """The plugin router (``/v2`` under ``/plugins/hl7``) and the root alias ``/hl7/v2``."""
    from fhirhub.adapters.hl7.processing import process_batch

    async def post_message(request: Request) -> Response:
        body = await request.body()
        outcomes = await run_in_threadpool(process_batch, hub, body)
        acks = b"".join(a for o in outcomes for a in o.acks)
        status = 200 if all(o.code == "AA" for o in outcomes) else 422
        return Response(acks, status_code=status, media_type=ER7_MEDIA_TYPE)

    plugin = APIRouter()
    plugin.add_api_route("/v2", post_message, methods=["POST"], summary=SUMMARY)
    alias = APIRouter(prefix="/hl7")
    alias.add_api_route("/v2", post_message, methods=["POST"], summary=SUMMARY)
    alias.mount_at_root = True  # type: ignore[attr-defined]  # see the register_routes hook
    return [plugin, alias]
