"""DELETE of a study, series or instance (non-standard, as Google and Azure offer it).

PS3.18 defines no delete for studies; Isthmus offers one because an archive must
be able to forget what it was sent by mistake.  It needs the `delete` permission
(auth.py) and answers how many instances went, or 404 when there was nothing.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from isthmus.web.errors import not_found
from isthmus.web.params import path_uids
from isthmus.web.service import blocking, context

log = logging.getLogger(__name__)


def routes() -> list[Route]:
    return [
        Route("/studies/{study}", delete, methods=["DELETE"]),
        Route("/studies/{study}/series/{series}", delete, methods=["DELETE"]),
        Route("/studies/{study}/series/{series}/instances/{instance}", delete, methods=["DELETE"]),
    ]


async def delete(request: Request) -> Response:
    study, series, instance = path_uids(request)
    assert study is not None
    archive = context(request).archive
    patients = await blocking(archive.patients_of, [study])  # before they are gone
    count = await blocking(archive.delete, study, series, instance)
    what = (
        f"instance {instance}" if instance else f"series {series}" if series else f"study {study}"
    )
    if count == 0:
        raise not_found(f"{what} is not in the archive")
    principal = request.scope.get("state", {}).get("principal")
    log.info("deleted %s (%d instances) for %s", what, count, getattr(principal, "name", "unknown"))
    patient_id, patient_name = patients.get(study, ("", ""))
    archive.activity.audit(
        "deleted",
        door="dicomweb",
        user=getattr(principal, "name", "unknown"),
        address=request.client.host if request.client else None,
        local=request.url.path,
        studies=[{"uid": study, "patient_id": patient_id, "patient_name": patient_name}],
        detail={"instances": count, "what": what},
    )
    return JSONResponse({"deleted": what, "instances": count})
