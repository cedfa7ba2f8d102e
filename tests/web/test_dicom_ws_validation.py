"""How the gateway follows a relayed association (web/dicom_ws/validation.py, PS3.8 9.2-9.3)."""

from __future__ import annotations

import pytest

from isthmus.dicom.ul.errors import PDUError
from isthmus.dicom.ul.pdu import abort
from isthmus.web.dicom_ws.validation import AssociationState

from .dicom_ws_support import (
    IMPLICIT_LE,
    RELEASE_RP,
    RELEASE_RQ,
    associate_ac,
    associate_rq,
    echo_rq_command,
    p_data,
)


def established(browser_requests: bool = True) -> AssociationState:
    state = AssociationState(browser_requests=browser_requests, max_pdu=65536)
    requestor, acceptor = ("browser", "peer") if browser_requests else ("peer", "browser")
    state.check(
        associate_rq(
            "PEER",
            "BROWSER",
            contexts=[
                (1, "1.2.840.10008.1.1", [IMPLICIT_LE]),
                (3, "1.2.840.10008.1.1", [IMPLICIT_LE]),
            ],
        ),
        requestor,
    )
    state.check(associate_ac("PEER", "BROWSER", [(1, 0, IMPLICIT_LE), (3, 4, "")]), acceptor)
    return state


def test_release_collision_lets_both_release_pdus_through() -> None:
    state = established()
    for pdu, side in (
        (RELEASE_RQ, "browser"),
        (RELEASE_RQ, "peer"),
        (RELEASE_RP, "browser"),
        (RELEASE_RP, "peer"),
    ):
        state.check(pdu, side)
    assert (state.finished, state.outcome) == (True, "released")


def test_p_data_after_release_is_unexpected() -> None:
    state = established()
    state.check(RELEASE_RQ, "browser")
    state.check(p_data(1, echo_rq_command()), "peer")  # the acceptor may still send (PS3.8 Sta8)
    state.check(RELEASE_RP, "peer")
    with pytest.raises(PDUError, match="unexpected"):
        state.check(p_data(1, echo_rq_command()), "browser")


def test_only_the_acceptor_answers_an_association_request() -> None:
    state = AssociationState(browser_requests=False, max_pdu=65536)
    state.check(associate_rq("BROWSER", "CALLER"), "peer")
    with pytest.raises(PDUError, match="A-ASSOCIATE-AC from the peer is unexpected"):
        state.check(associate_ac("BROWSER", "CALLER", [(1, 0, IMPLICIT_LE)]), "peer")


def test_an_answer_to_a_context_never_proposed_is_refused() -> None:
    state = AssociationState(browser_requests=True, max_pdu=65536)
    state.check(associate_rq("PEER", "BROWSER"), "browser")
    with pytest.raises(PDUError, match=r"never proposed: \[5\]"):
        state.check(associate_ac("PEER", "BROWSER", [(5, 0, IMPLICIT_LE)]), "peer")


def test_a_rejected_context_cannot_carry_data() -> None:
    with pytest.raises(PDUError, match=r"context \[3\] that was not accepted"):
        established().check(p_data(3, echo_rq_command()), "browser")


def test_an_abort_ends_the_association_in_any_phase() -> None:
    for state in (AssociationState(browser_requests=True, max_pdu=65536), established()):
        state.check(abort(), "peer")
        assert (state.finished, state.outcome) == (True, "aborted")


@pytest.mark.parametrize(
    "rq, message",
    [
        (associate_rq("PEER", "BRO\\WSER"), "calling AE title holds bytes not allowed"),
        (
            associate_rq("PEER", "BROWSER", contexts=[(2, "1.2.840.10008.1.1", [IMPLICIT_LE])]),
            "ID 2 is not odd",
        ),
        (
            associate_rq("PEER", "BROWSER", contexts=[(1, "1.2.840.10008.1.1", [])]),
            "needs one abstract and some transfer",
        ),
        (
            associate_rq("PEER", "BROWSER", contexts=[(1, "not-a-uid", [IMPLICIT_LE])]),
            "is not a UID",
        ),
        (
            associate_rq("PEER", "BROWSER", contexts=[(1, "1.2.840.10008.1.1", [IMPLICIT_LE])] * 2),
            "ID 1 appears twice",
        ),
    ],
)
def test_malformed_association_requests_are_refused(rq: bytes, message: str) -> None:
    with pytest.raises(PDUError, match=message):
        AssociationState(browser_requests=True, max_pdu=1 << 20).check(rq, "browser")
