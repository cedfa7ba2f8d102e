"""The association relay is transparent (relay/caller.py, agent.py): what a workstation
negotiates with a remote PACS on its own Isthmus, and what the PACS answers, are what
it would negotiate and hear calling the PACS directly.  The far PACS is a pynetdicom
SCP; each test asks it the same thing directly and through the relay, over a real NATS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation, UserIdentityNegotiation
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at run time
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from isthmus.relay.router import RelayRouter
from isthmus.testing.nats import TemporaryNATS

from .router_support import Site, entry, export, start_site

FIND = StudyRootQueryRetrieveInformationModelFind
# PS3.4 C.3.4 table C.3-1: relational queries, combined date-time matching, fuzzy
# semantic matching of person names, timezone query adjustment (1 = supported).
QUERY_OPTIONS = b"\x01\x01\x00\x01"
PACS_OPTIONS = b"\x00\x01\x00\x01"  # what the PACS supports of them
# PS3.7 D.3.3.7: the PACS takes this JSON Web Token (type 5) only, and answers it.
TOKEN, SERVER_RESPONSE = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", b"welcome alice"


@dataclass
class Far:
    """The far PACS (pynetdicom) and what it saw of its callers."""

    port: int
    requested: list[dict[str, bytes]] = field(default_factory=list)
    identities: list[tuple[int, bytes, bytes]] = field(default_factory=list)


@dataclass
class Federation:
    nats: TemporaryNATS
    a: Site
    b: Site
    far: Far


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    scp = AE(ae_title="PACSB")
    scp.add_supported_context(Verification)
    scp.add_supported_context(FIND)
    far = Far(0)

    def extended(event: Any) -> dict[str, bytes]:
        """PS3.7 D.3.3.5: the SCP answers the options it supports of those asked."""
        asked = dict(event.app_info)
        far.requested.append(asked)
        return {uid: PACS_OPTIONS for uid in asked}

    def identity(event: Any) -> tuple[bool, bytes | None]:
        """PS3.7 D.3.3.7: the SCP checks the user and answers when asked to."""
        far.identities.append((event.user_id_type, event.primary_field, event.secondary_field))
        known = event.primary_field == TOKEN
        return known, SERVER_RESPONSE if known else None

    handlers = [(evt.EVT_SOP_EXTENDED, extended), (evt.EVT_USER_ID, identity)]
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    far.port = int(server.server_address[1])
    nats = TemporaryNATS().start()
    a = start_site("A", nats.url)
    b = start_site("B", nats.url)
    try:
        for site in (a, b):
            site.directory.update(entry(a))
            site.directory.update(entry(b, export("B", "PACSB")))
        for site, exports in ((a, {}), (b, {"PACSB": ("127.0.0.1", far.port)})):
            site.relay = RelayRouter(
                link=site.link,
                identity=site.identity,
                directory=site.directory,
                exports=exports,
                node=site.port,
                calling_aet=f"RELAY{site.name}",
                timeout=10.0,
            )
            site.relay.start()
        yield Federation(nats, a, b, far)
    finally:
        for site in (a, b):
            site.close()
        server.shutdown()
        nats.close()


def _associate(port: int, ext_neg: list[Any]) -> Any:
    ae = AE(ae_title="WORKSTATION")
    ae.add_requested_context(FIND)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSB", ext_neg=ext_neg)
    assert assoc.is_established
    return assoc


def _query_options() -> SOPClassExtendedNegotiation:
    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = FIND
    item.service_class_application_information = QUERY_OPTIONS
    return item


@pytest.mark.parametrize("path", ["direct", "relay"])
def test_sop_class_extended_negotiation_reaches_the_far_pacs_and_its_answer_the_caller(
    federation: Federation, path: str
) -> None:
    """A workstation asking for combined date-time matching and the other C-FIND options
    (PS3.4 C.3.4, PS3.7 D.3.3.5) gets the far PACS's own answer through the relay."""
    port = federation.far.port if path == "direct" else federation.a.dicom_port
    before = len(federation.far.requested)
    assoc = _associate(port, [_query_options()])
    try:
        answered = dict(assoc.acceptor.sop_class_extended)
    finally:
        assoc.release()
    assert federation.far.requested[before:] == [{FIND: QUERY_OPTIONS}]
    assert answered == {FIND: PACS_OPTIONS}


def test_a_caller_without_extended_negotiation_gets_none(federation: Federation) -> None:
    assoc = _associate(federation.a.dicom_port, [])
    try:
        assert dict(assoc.acceptor.sop_class_extended) == {}
    finally:
        assoc.release()


def _identity(token: bytes) -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = 5  # JSON Web Token
    item.positive_response_requested = True
    item.primary_field = token
    return item


@pytest.mark.parametrize("path", ["direct", "relay"])
def test_user_identity_reaches_the_far_pacs_and_its_server_response_the_caller(
    federation: Federation, path: str
) -> None:
    """PS3.7 D.3.3.7: a PACS that authenticates its users by user identity negotiation
    sees the workstation's, and the workstation the PACS's server response."""
    port = federation.far.port if path == "direct" else federation.a.dicom_port
    before = len(federation.far.identities)
    assoc = _associate(port, [_identity(TOKEN)])
    try:
        response = assoc.acceptor.user_identity
    finally:
        assoc.release()
    assert federation.far.identities[before:] == [(5, TOKEN, b"")]
    assert response is not None and response.server_response == SERVER_RESPONSE


def test_a_user_the_far_pacs_does_not_know_is_rejected_through_the_relay(
    federation: Federation,
) -> None:
    ae = AE(ae_title="WORKSTATION")
    ae.add_requested_context(FIND)
    ae.acse_timeout = ae.network_timeout = 30
    port = federation.a.dicom_port
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSB", ext_neg=[_identity(b"wrong")])
    assert assoc.is_rejected
