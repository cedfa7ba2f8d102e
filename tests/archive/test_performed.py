"""PerformedSteps (MPPS, PS3.4 F.7.2) in the index: the race of two final N-SETs."""

from __future__ import annotations

import threading
from typing import Any

from pydicom.uid import generate_uid

from isthmus.archive import Archive, PerformedStepError


def _el(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _in_progress() -> dict[str, Any]:
    return {
        "00400270": _el("SQ", {"0020000D": _el("UI", str(generate_uid()))}),
        "00400253": _el("SH", "PPS1"),
        "00400241": _el("AE", "MOD"),
        "00400244": _el("DA", "20260102"),
        "00400245": _el("TM", "0930"),
        "00400252": _el("CS", "IN PROGRESS"),
        "00080060": _el("CS", "CT"),
    }


def _final(status: str) -> dict[str, Any]:
    series = {"0020000E": _el("UI", str(generate_uid()))}
    return {
        "00400252": _el("CS", status),
        "00400250": _el("DA", "20260102"),
        "00400251": _el("TM", "0950"),
        "00400340": _el("SQ", series),
    }


def _finish_at_once(archive: Archive, uid: str) -> dict[str, int]:
    """COMPLETED and DISCONTINUED sent at the same moment; the status each got (0: won)."""
    barrier = threading.Barrier(2)
    outcomes: dict[str, int] = {}

    def finish(status: str) -> None:
        barrier.wait()
        try:
            archive.performed_steps.update(uid, _final(status))
            outcomes[status] = 0
        except PerformedStepError as exc:
            outcomes[status] = exc.status

    threads = [threading.Thread(target=finish, args=(s,)) for s in ("COMPLETED", "DISCONTINUED")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_of_two_concurrent_final_n_sets_exactly_one_wins(archive: Archive) -> None:
    for _ in range(3):
        uid = str(generate_uid())
        archive.performed_steps.create(uid, _in_progress())
        outcomes = _finish_at_once(archive, uid)
        assert sorted(outcomes.values()) == [0, 0x0110]
        winner = next(s for s, code in outcomes.items() if code == 0)
        assert archive.performed_steps.get(uid).status == winner
