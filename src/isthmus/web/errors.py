"""HTTP errors as JSON: every failure answers `{"status", "error", "message"}`, never a trace.

PS3.18 8.5 lists the status codes DICOMweb services use; the body of an error is
not specified, so Isthmus answers a small JSON object whose `message` says, in
plain words, what was wrong with the request.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from isthmus.archive import BlobStoreUnavailable

log = logging.getLogger(__name__)


class HTTPError(Exception):
    """Raised by a handler to answer `status` with a readable `message`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> HTTPError:
    return HTTPError(400, message)


def not_found(message: str) -> HTTPError:
    return HTTPError(404, message)


def not_acceptable(message: str) -> HTTPError:
    return HTTPError(406, message)


def unsupported_media_type(message: str) -> HTTPError:
    return HTTPError(415, message)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON body every error carries."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, int | str] = {"status": status, "error": phrase, "message": message}
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return error_response(exc.status, exc.message, exc.headers)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and message == "Not Found":
        message = f"no resource at {request.url.path}"
    if exc.status_code == 405:
        message = f"{request.method} is not supported on {request.url.path}"
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_response(500, "internal error; the server log has the details")


async def _blobs_unavailable(request: Request, exc: Exception) -> Response:
    """The blob store (S3) could not be reached within its retry bound: transient."""
    log.error("%s %s: %s", request.method, request.url.path, exc)
    message = "the blob store is unavailable; try again later"
    return error_response(503, message, {"Retry-After": "30"})


EXCEPTION_HANDLERS = {
    HTTPError: _http_error,
    BlobStoreUnavailable: _blobs_unavailable,
    HTTPException: _starlette_error,
    Exception: _unexpected,
}
