"""The command line's client of a running node's HTTP API (`--server URL`, `--token T`).

`isthmus share`, `isthmus fetch` and `isthmus relay` act on a node that is already
serving, with the same bearer tokens as any other client (docs/security.md).  A node
that cannot be reached or that refuses ends the command with the node's own message.
"""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_SERVER = "http://127.0.0.1:8042"


def call(
    method: str,
    server: str,
    path: str,
    token: str | None,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Any:
    """The JSON answer of `method` `path` on `server`; SystemExit saying why not."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        reply = httpx.request(
            method,
            f"{server.rstrip('/')}{path}",
            json=body,
            params=params,
            headers=headers,
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise SystemExit(f"isthmus: cannot reach {server}: {exc}") from None
    if reply.status_code >= 400:
        try:
            message = reply.json().get("message", reply.text)
        except (ValueError, AttributeError):
            message = reply.text.strip()
        raise SystemExit(f"isthmus: {server} answered {reply.status_code}: {message}")
    return reply.json()
