"""The association relay when something fails: the far device, the caller, NATS.  Every
failure ends the association on both sides with A-ABORT or a failure status within a
bounded time (relay/session.py: heartbeats, silence, bounded waits)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread

from isthmus.config import Peer
from isthmus.dicom.part10 import dataset_offset
from isthmus.dimse.requestor import AssociationFailed, Requestor
from isthmus.testing import dcmtk
from isthmus.testing.dcmtk import StoreSCP
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.nats import TemporaryNATS

from .router_support import Site, entry, export, start_relays, start_site

pytestmark = pytest.mark.dcmtk
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
TIMEOUT = 3.0  # the routers' bound on every wait for each other
IDLE = 6.0  # seconds an association may carry no DIMSE message


@dataclass
class Pair:
    nats: TemporaryNATS
    a: Site
    b: Site
    store: StoreSCP
    instance: Path

    def requestor(self) -> Requestor:
        """An association from a workstation at A to STOREB (site B), through the relay."""
        peer = Peer("STOREB", "127.0.0.1", self.a.dicom_port)
        return Requestor(peer, "WORKSTATION", [(CT, [EXPLICIT_LE])], timeout=30).open()

    def store_one(self, requestor: Requestor) -> int:
        data = self.instance.read_bytes()
        ds = dcmread(self.instance)
        return requestor.store(1, CT, ds.SOPInstanceUID, memoryview(data)[dataset_offset(data) :])


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    if dcmtk.missing_tools():
        pytest.fail(f"DCMTK tools missing: {dcmtk.missing_tools()}")
    nats = TemporaryNATS().start()
    a, b = start_site("A", nats.url), start_site("B", nats.url)
    store = StoreSCP(tmp_path / "storeb", aet="STOREB").start()
    try:
        start_relays(a, b, {"STOREB": ("127.0.0.1", store.port)}, timeout=TIMEOUT, idle=IDLE)
        [instance] = write_study(StudySpec(instances_per_series=1), tmp_path / "in")
        yield Pair(nats, a, b, store, instance)
    finally:
        if not nats.running:  # back for the links to drain and close cleanly
            nats.start()
        for site in (a, b):
            site.close()
        store.stop()
        nats.close()


def wait_until(condition, what: str, bound: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll `condition` (a behaviour, not a timing: the bound is only a safety net)."""
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never: {what}")
        time.sleep(0.05)


def test_the_far_device_going_away_aborts_the_caller(pair: Pair) -> None:
    requestor = pair.requestor()
    assert pair.store_one(requestor) == 0x0000
    pair.store.stop()  # storescp killed mid-association
    with pytest.raises(AssociationFailed, match="aborted|closed"):
        pair.store_one(requestor)
    assert pair.a.relay is not None
    wait_until(lambda: pair.a.relay.sessions() == 0, "site A's association ends")


@pytest.mark.parametrize("how", ["A-ABORT", "connection closed"])
def test_the_caller_going_away_aborts_the_far_association(pair: Pair, how: str) -> None:
    requestor = pair.requestor()
    assert pair.store_one(requestor) == 0x0000
    assert pair.b.relay is not None and pair.b.relay.sessions() == 1
    assert requestor.sock is not None
    if how == "A-ABORT":
        requestor.abort()
    else:  # the workstation vanishes without a word
        requestor.sock.shutdown(socket.SHUT_RDWR)
        requestor.close()
    wait_until(lambda: pair.b.relay.sessions() == 0, "site B's association with STOREB ends")


def test_nats_down_refuses_new_associations_then_they_work_again(pair: Pair) -> None:
    pair.nats.stop()
    code, output = _echo(pair)
    assert code != 0 and "Association Rejected" in output and "Transient" in output
    pair.nats.start()
    wait_until(lambda: _echo(pair)[0] == 0, "C-ECHO through the relay once NATS is back")


def test_nats_down_mid_association_aborts_the_caller(pair: Pair) -> None:
    requestor = pair.requestor()
    assert pair.store_one(requestor) == 0x0000
    pair.nats.stop()
    with pytest.raises(AssociationFailed):
        pair.store_one(requestor)  # no answer from B: A-ABORT after TIMEOUT of silence
    assert pair.a.relay is not None
    wait_until(lambda: pair.a.relay.sessions() == 0, "site A's association ends")


def test_a_release_ends_both_associations(pair: Pair) -> None:
    requestor = pair.requestor()
    assert pair.store_one(requestor) == 0x0000
    requestor.release()
    assert pair.a.relay is not None and pair.b.relay is not None
    wait_until(
        lambda: pair.a.relay.sessions() == 0 and pair.b.relay.sessions() == 0,
        "both sides of the association end",
    )


def _echo(pair: Pair) -> tuple[int, str]:
    done = dcmtk.run(
        "echoscu", "-aet", "WS", "-aec", "STOREB", "127.0.0.1", str(pair.a.dicom_port), timeout=60
    )
    return done.returncode, done.stdout + done.stderr


def test_an_idle_association_is_aborted_on_both_sides(pair: Pair) -> None:
    requestor = pair.requestor()
    assert pair.store_one(requestor) == 0x0000
    assert pair.a.relay is not None and pair.b.relay is not None
    wait_until(
        lambda: pair.a.relay.sessions() == 0 and pair.b.relay.sessions() == 0,
        "the idle association ends",
    )
    with pytest.raises(AssociationFailed):
        pair.store_one(requestor)


def test_revoking_the_far_site_aborts_its_associations(pair: Pair) -> None:
    requestor = pair.requestor()
    assert pair.store_one(requestor) == 0x0000
    pair.a.directory.update(entry(pair.b, export("B", "STOREB"), revoked=True))
    with pytest.raises(AssociationFailed, match="aborted|closed"):
        pair.store_one(requestor)
    assert pair.a.relay is not None and pair.b.relay is not None
    assert pair.a.relay.routes() == []
    # B hears nothing more from A: its side ends when A falls silent.
    wait_until(lambda: pair.b.relay.sessions() == 0, "site B's association ends")


def test_a_site_holding_too_many_associations_is_refused_more(pair: Pair) -> None:
    assert pair.b.relay is not None
    pair.b.relay.max_associations = 1
    first = pair.requestor()
    try:
        with pytest.raises(
            AssociationFailed, match=r"rejected the association \(result 2, source 3, reason 2\)"
        ):
            pair.requestor()
    finally:
        first.release()
    wait_until(lambda: pair.b.relay.sessions() == 0, "the first association ends")
    pair.requestor().release()  # room again
