"""Which relay service (`echo`, `find`, `move`, `get`, `store`) a presentation context or
a DIMSE request asks for: what an export's `services` are checked against.

The abstract syntax of a context names its SOP class (PS3.8 7.1.1.13): Verification
(PS3.4 A) is `echo`; the Query/Retrieve information models (PS3.4 C.6) are `find`,
`move` or `get` by their FIND, MOVE and GET SOP classes; a storage SOP class (PS3.4
B.5) is `store` - or `get` when the caller takes the SCP role for it (PS3.7 D.3.3.4),
since that is how a C-GET's C-STORE sub-operations come back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from isthmus.dicom.ul.items import PresentationContextRQ, RoleSelection
from isthmus.dimse import messages as msg
from isthmus.dimse.scp import STORAGE_CLASSES, VERIFICATION

_QR = "1.2.840.10008.5.1.4.1.2."  # PS3.4 C.6 information models
FIND = frozenset(_QR + m for m in ("1.1", "2.1", "3.1"))
MOVE = frozenset(_QR + m for m in ("1.2", "2.2", "3.2", "4.2"))
GET = frozenset(_QR + m for m in ("1.3", "2.3", "3.3", "4.3", "5.3"))

# The service a request's Command Field asks for (PS3.7 E.1-1).
BY_COMMAND = {
    msg.C_ECHO_RQ: "echo",
    msg.C_FIND_RQ: "find",
    msg.C_MOVE_RQ: "move",
    msg.C_GET_RQ: "get",
    msg.C_STORE_RQ: "store",
}


def service_of(abstract_syntax: str) -> str | None:
    """The service of a SOP class, None when the relay does not carry it."""
    if abstract_syntax == VERIFICATION:
        return "echo"
    if abstract_syntax in FIND:
        return "find"
    if abstract_syntax in MOVE:
        return "move"
    if abstract_syntax in GET:
        return "get"
    if abstract_syntax in STORAGE_CLASSES:
        return "store"
    return None


def permitted_contexts(
    contexts: Iterable[PresentationContextRQ],
    roles: Iterable[RoleSelection],
    permits: Callable[[str], bool],
) -> list[PresentationContextRQ]:
    """The contexts whose service `permits(service)`; a storage context also when C-GET
    is permitted and the caller proposes the SCP role for its class."""
    scp_role = {r.sop_class for r in roles if r.scp_role}
    out = []
    for cx in contexts:
        service = service_of(cx.abstract_syntax)
        if service is None:
            continue
        if permits(service) or (
            service == "store" and cx.abstract_syntax in scp_role and permits("get")
        ):
            out.append(cx)
    return out
