"""Ask for the URLs of many objects at once, when the object store works by URL.

`PresignedObjects` (the routers' store, through the bridge) signs one URL per object;
asking the bridge for each one as it is needed would cost a round trip to the bridge
per instance - what transfers exist to avoid.  A store that has
``presign(transfer, names, method)`` is asked for a batch ahead of use; one without
(`S3Objects`) needs none.  Best effort: a failure here is left to the PUT or GET that
follows, which asks again and reports it properly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def presign(objects: Any, method: str, wanted: Iterable[tuple[str, list[str]]]) -> None:
    """Pre-sign `method` URLs for (transfer, names) pairs, one call per transfer."""
    sign = getattr(objects, "presign", None)
    if sign is None:
        return
    by_transfer: dict[str, list[str]] = {}
    for transfer, names in wanted:
        by_transfer.setdefault(transfer, []).extend(names)
    for transfer, names in by_transfer.items():
        try:
            sign(transfer, names, method)
        except Exception as exc:  # the PUT or GET itself will tell
            log.debug("presign of %d %s URLs for %s failed: %s", len(names), method, transfer, exc)
