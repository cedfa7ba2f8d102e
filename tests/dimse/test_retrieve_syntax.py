"""C-GET sends an instance in the transfer syntax it is stored in whenever the requestor
proposed that syntax on a context the acceptor accepted (issue 15: an instance stored in
Explicit VR Big Endian came back as Explicit VR Little Endian)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import AE, build_role, evt

from isthmus.server import Node
from isthmus.testing.generate import StudySpec, study

from .support import dataset_bytes, dicom_node

GET = "1.2.840.10008.5.1.4.1.2.2.3"
EBE, ELE, ILE = "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


@pytest.fixture(scope="module")
def big_endian_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Dataset]]:
    with dicom_node(tmp_path_factory.mktemp("ebe")) as node:
        ds = next(study(StudySpec(instances_per_series=1, rows=8, columns=8)))
        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = False, False
        write_dataset(buf, ds)
        assert node.archive.store(buf.getvalue(), EBE).outcome.value == "stored"
        yield node, ds


def c_get(node: Node, ds: Dataset, contexts: list[list[str]]) -> list[tuple[str, bytes]]:
    """C-GET the study with these storage contexts; (syntax, dataset bytes) received."""
    ae = AE("GETTER")
    ae.add_requested_context(GET)
    for syntaxes in contexts:
        ae.add_requested_context(ds.SOPClassUID, syntaxes)
    got: list[tuple[str, bytes]] = []

    def on_store(event: evt.Event) -> int:
        got.append((str(event.context.transfer_syntax), bytes(event.request.DataSet.getvalue())))
        return 0x0000

    assoc = ae.associate(
        "127.0.0.1",
        node.dicom_port,
        ae_title=node.settings.aet,
        ext_neg=[build_role(ds.SOPClassUID, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ds.StudyInstanceUID
    statuses = [int(s.Status) for s, _ in assoc.send_c_get(query, GET) if s]
    assoc.release()
    assert statuses[-1] == 0x0000
    return got


@pytest.mark.parametrize(
    "contexts",
    [
        [[ELE, EBE, ILE], [ELE, EBE, ILE]],  # the same list twice (DCMTK-like lists)
        [[ELE, ILE], [EBE]],
        [[EBE, ELE, ILE]],
        [[EBE]],
    ],
    ids=["same-list-twice", "own-context", "first-choice", "only"],
)
def test_c_get_sends_big_endian_as_stored_when_proposed_and_accepted(
    big_endian_node: tuple[Node, Dataset], contexts: list[list[str]]
) -> None:
    node, ds = big_endian_node
    [row] = node.archive.instances(sop_uid=ds.SOPInstanceUID)
    assert c_get(node, ds, contexts) == [(EBE, dataset_bytes(node.archive.read_instance(row)))]


def test_c_get_transcodes_when_big_endian_was_not_accepted(
    big_endian_node: tuple[Node, Dataset],
) -> None:
    """One context, Little Endian first: the acceptor takes the requestor's first choice
    (PS3.8 9.3.3.2: one syntax per context) and the instance is transcoded to it."""
    node, ds = big_endian_node
    [(syntax, _data)] = c_get(node, ds, [[ELE, EBE, ILE]])
    assert syntax == ELE


def test_requestor_proposing_the_stored_syntax_once_per_context_gets_each_syntax(
    big_endian_node: tuple[Node, Dataset],
) -> None:
    """Negotiation gives distinct syntaxes to contexts of one SOP class when it can."""
    node, ds = big_endian_node
    ae = AE("GETTER")
    ae.add_requested_context(GET)
    for _ in range(3):
        ae.add_requested_context(ds.SOPClassUID, [ELE, EBE, ILE])
    assoc = ae.associate(
        "127.0.0.1",
        node.dicom_port,
        ae_title=node.settings.aet,
        ext_neg=[build_role(ds.SOPClassUID, scp_role=True)],
    )
    accepted = sorted(
        cx.transfer_syntax[0] for cx in assoc.accepted_contexts if cx.abstract_syntax != GET
    )
    assoc.release()
    assert accepted == sorted([ELE, EBE, ILE])
