"""HTTP entry point: ``POST /hl7/v2`` (also at the plugin path ``/plugins/hl7/v2``).

The body is one ER7 message or an FHS/BHS batch; the answer is the ACK(s) as
``x-application/hl7-v2+er7``, 200 when every message was accepted (AA), else 422. The caller
must be allowed to feed (:func:`fhirhub.adapters.hl7.senders.may_feed`: 403 otherwise) and
feeds for its own tenant only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from fhirhub.adapters.hl7.convert.provenance import ER7_MEDIA_TYPE
from fhirhub.sdk import current_access, forbidden

if TYPE_CHECKING:
    from fhirhub.sdk import Hub

SUMMARY = "Process one HL7 v2 message or an FHS/BHS batch"


def routers(hub: Hub) -> list[APIRouter]:
    """The plugin router (``/v2`` under ``/plugins/hl7``) and the root alias ``/hl7/v2``."""
    from fhirhub.adapters.hl7.processing import process_batch
    from fhirhub.adapters.hl7.senders import Source, may_feed

    async def post_message(request: Request) -> Response:
        caller = current_access()
        if not may_feed(caller):
            raise forbidden(
                "Sending HL7 v2 needs the system, an organization admin, or system/*.cu scopes"
            )
        body = await request.body()
        source = Source(peer=request.client.host if request.client else None, caller=caller)
        outcomes = await run_in_threadpool(process_batch, hub, body, source)
        acks = b"".join(a for o in outcomes for a in o.acks)
        status = 200 if all(o.code == "AA" for o in outcomes) else 422
        return Response(acks, status_code=status, media_type=ER7_MEDIA_TYPE)

    plugin = APIRouter()
    plugin.add_api_route("/v2", post_message, methods=["POST"], summary=SUMMARY)
    alias = APIRouter(prefix="/hl7")
    alias.add_api_route("/v2", post_message, methods=["POST"], summary=SUMMARY)
    alias.mount_at_root = True  # type: ignore[attr-defined]  # see the register_routes hook
    return [plugin, alias]
