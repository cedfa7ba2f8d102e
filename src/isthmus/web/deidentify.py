"""POST /api/deidentify: stored studies de-identified into new studies (PS3.15 Annex E).

PS3.18 has no such service, so it lives under /api, not /dicom-web.  It stores new
instances, so it needs the `write` permission, checked here (the middleware guards the
DICOMweb paths only).  Body (JSON):

    {"project": "trial-1", "studies": ["1.2.3…"], "options": {"dates": "modified", …}}

`options` are `DeidentificationOptions` by name (docs/security.md, "De-identification").
The answer lists each source study with the new study it became, how many instances
were stored (or were already there from an earlier run of the project), and those left
out (burned-in annotation without a pixel rule) or refused, with the reason; 404 when
none of the studies is in the archive, 400 for a body or options that make no sense.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from isthmus.archive import DeidentificationOptions, DeidentificationOptionsError
from isthmus.web.errors import bad_request, not_found
from isthmus.web.service import blocking, context

log = logging.getLogger(__name__)
MAX_STUDIES = 1000


def routes() -> list[Route]:
    return [Route("/api/deidentify", deidentify, methods=["POST"])]


async def deidentify(request: Request) -> Response:
    ctx = context(request)
    principal = ctx.authenticator.require(request.headers.get("authorization"), "write")
    project, studies, options = _parse(await request.body())
    try:
        result = await blocking(
            ctx.archive.deidentify_studies,
            studies,
            project,
            options,
            user=principal.name,
            address=request.client.host if request.client else None,
            local=request.url.path,
        )
    except DeidentificationOptionsError as exc:
        raise bad_request(str(exc)) from None
    if len(result.missing) == len(studies):
        raise not_found("none of the studies is in the archive")
    log.info(
        "de-identified %d study(ies) into project %s for %s",
        len(result.studies),
        project,
        principal.name,
    )
    return JSONResponse(
        {
            "project": project,
            "studies": [{"source": s, "study": n} for s, n in result.studies.items()],
            "stored": result.stored,
            "duplicates": result.duplicates,
            "excluded": [{"instance": u, "reason": r} for u, r in result.excluded],
            "failed": [{"instance": u, "reason": r} for u, r in result.failed],
            "missing": result.missing,
        }
    )


def _parse(body: bytes) -> tuple[str, list[str], DeidentificationOptions]:
    try:
        raw: Any = json.loads(body)
    except ValueError:
        raise bad_request("the body must be JSON: {project, studies, options}") from None
    if not isinstance(raw, dict):
        raise bad_request("the body must be a JSON object: {project, studies, options}")
    unknown = sorted(set(raw) - {"project", "studies", "options"})
    if unknown:
        raise bad_request(f"unknown fields {unknown}")
    project, studies = raw.get("project"), raw.get("studies")
    if not isinstance(project, str):
        raise bad_request("project must be a name")
    if (
        not isinstance(studies, list)
        or not studies
        or len(studies) > MAX_STUDIES
        or not all(isinstance(s, str) and s for s in studies)
    ):
        raise bad_request(f"studies must be a list of 1 to {MAX_STUDIES} Study Instance UIDs")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise bad_request("options must be an object")
    try:
        return project, list(dict.fromkeys(studies)), DeidentificationOptions.from_mapping(options)
    except (DeidentificationOptionsError, ValueError) as exc:
        raise bad_request(str(exc)) from None
