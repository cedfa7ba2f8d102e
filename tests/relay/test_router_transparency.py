"""The association relay is transparent (relay/caller.py, agent.py): what a workstation
negotiates with a remote PACS on its own Isthmus, and what the PACS answers, are what
it would negotiate and hear calling the PACS directly.  The far PACS is a pynetdicom
SCP; each test asks it the same thing directly and through the relay, over a real NATS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation, UserIdentityNegotiation
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # made at run time
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from isthmus.dicom.part10 import dataset_offset
from isthmus.testing import dcmtk
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.nats import TemporaryNATS

from .router_support import Site, start_relays, start_site

FIND = StudyRootQueryRetrieveInformationModelFind
MOVE = StudyRootQueryRetrieveInformationModelMove
# The far PACS's studies: names in ISO 2022 IR 87 (PS3.5 H.3.1), ISO_IR 100, ISO_IR 192.
NAMES = [
    (
        ["", "ISO 2022 IR 87"],
        "Yamada^Tarou=\u5c71\u7530^\u592a\u90ce=\u3084\u307e\u3060^\u305f\u308d\u3046",
    ),
    ("ISO_IR 100", "M\u00fcller^J\u00f6rg"),
    ("ISO_IR 192", "\u0417\u0430\u0445\u0430\u0440\u043e\u0432^\u041f\u0451\u0442\u0440"),
]
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
    identifiers: list[bytes] = field(default_factory=list)  # C-FIND identifiers, as sent
    stored: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # UID: syntax, data set
    store_port: int = 0  # MOVE's destination STOREB, which refuses one instance of three


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
    scp.add_supported_context(MOVE)
    scp.add_requested_context(CTImageStorage)
    scp.add_supported_context(CTImageStorage, ALL_TRANSFER_SYNTAXES)
    far = Far(0)
    store = AE(ae_title="STOREB")
    store.add_supported_context(CTImageStorage)
    stored: list[str] = []

    def on_store(event: Any) -> int:
        stored.append(event.request.AffectedSOPInstanceUID)
        return {1: 0x0000, 2: 0xA700, 3: 0xB000}[len(stored) % 3 + 1]

    store_server = store.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    far.store_port = int(store_server.server_address[1])

    def find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        far.identifiers.append(event.request.Identifier.getvalue())
        for charset, name in NAMES:
            match = Dataset()
            match.SpecificCharacterSet = charset
            match.QueryRetrieveLevel = "STUDY"
            match.PatientName = name
            match.StudyDate = "20200315"
            match.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
            yield 0xFF00, match

    def store_here(event: Any) -> int:
        """PACSB's own C-STORE SCP: keeps each data set as it came, in its syntax."""
        syntax = event.context.transfer_syntax
        far.stored[event.request.AffectedSOPInstanceUID] = (
            syntax,
            event.request.DataSet.getvalue(),
        )
        return 0x0000

    def move(event: Any) -> Iterator[Any]:
        yield "127.0.0.1", far.store_port
        yield 3
        for _ in range(3):
            instance = Dataset()
            instance.SOPClassUID = CTImageStorage
            instance.SOPInstanceUID = generate_uid()
            instance.file_meta = Dataset()
            instance.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
            yield 0xFF00, instance

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

    handlers = [
        (evt.EVT_SOP_EXTENDED, extended),
        (evt.EVT_USER_ID, identity),
        (evt.EVT_C_FIND, find),
        (evt.EVT_C_MOVE, move),
        (evt.EVT_C_STORE, store_here),
    ]
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    far.port = int(server.server_address[1])
    nats = TemporaryNATS().start()
    a = start_site("A", nats.url)
    b = start_site("B", nats.url)
    try:
        start_relays(a, b, {"PACSB": ("127.0.0.1", far.port)}, timeout=10.0)
        yield Federation(nats, a, b, far)
    finally:
        for site in (a, b):
            site.close()
        server.shutdown()
        store_server.shutdown()
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


def _findscu(port: int, out: Path, *keys: str) -> list[bytes]:
    """DCMTK findscu at `port`; each response's data set as it came, in order (without
    the File Meta Information findscu adds: its Media Storage SOP Instance UID is new)."""
    out.mkdir(parents=True)
    done = dcmtk.run(
        "findscu", "-S", "-X", "-od", str(out), "-aet", "WORKSTATION", "-aec", "PACSB",
        "127.0.0.1", str(port), *(arg for key in keys for arg in ("-k", key)),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    files = [p.read_bytes() for p in sorted(out.glob("rsp*.dcm"))]
    return [data[dataset_offset(data) :] for data in files]


@pytest.mark.dcmtk
def test_c_find_with_character_sets_date_range_and_wildcards_is_byte_identical(
    federation: Federation, tmp_path: Path
) -> None:
    """PS3.4 C.2.2.2: a date range and wildcards in ISO_IR 192 reach the far PACS as the
    workstation encoded them; its matches in ISO 2022 IR 87, ISO_IR 100 and ISO_IR 192
    (PS3.5 6.1) come back as the PACS encoded them, byte for byte."""
    keys = (
        "SpecificCharacterSet=ISO_IR 192",
        "QueryRetrieveLevel=STUDY",
        "PatientName=*\u00f6*",
        "StudyDate=20200101-20201231",
        "StudyDescription=?T*",
        "StudyInstanceUID",
    )
    far = federation.far
    before = len(far.identifiers)
    direct = _findscu(far.port, tmp_path / "direct", *keys)
    relayed = _findscu(federation.a.dicom_port, tmp_path / "relay", *keys)
    assert len(direct) == len(NAMES) and relayed == direct
    sent = far.identifiers[before:]
    assert len(sent) == 2 and sent[0] == sent[1]
    assert "*\u00f6*".encode() in sent[0] and b"20200101-20201231" in sent[0]


@pytest.mark.parametrize("path", ["direct", "relay"])
def test_c_move_warning_and_its_counts_reach_the_workstation(
    federation: Federation, path: str
) -> None:
    """PS3.4 C.4.2.1.5: a C-MOVE whose destination failed one sub-operation and warned
    on another ends 0xB000 with the far PACS's counts and Failed SOP Instance UID List."""
    port = federation.far.port if path == "direct" else federation.a.dicom_port
    ae = AE(ae_title="WORKSTATION")
    ae.add_requested_context(MOVE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSB")
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    try:
        responses = list(assoc.send_c_move(query, "STOREB", MOVE))
    finally:
        assoc.release()
    status, identifier = responses[-1]
    assert status.Status == 0xB000
    counts = [
        status.get(k)
        for k in (
            "NumberOfCompletedSuboperations",
            "NumberOfFailedSuboperations",
            "NumberOfWarningSuboperations",
        )
    ]
    assert counts == [1, 1, 1]
    assert identifier is not None and identifier["FailedSOPInstanceUIDList"].VM == 1
    assert [r[0].NumberOfRemainingSuboperations for r in responses[:-1]] == [2, 1, 0][
        : len(responses) - 1
    ]


def _storescu(port: int, path: Path, *options: str) -> None:
    done = dcmtk.run(
        "storescu", *options, "-aet", "WORKSTATION", "-aec", "PACSB", "127.0.0.1", str(port),
        str(path),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _stored_as_sent(federation: Federation, path: Path) -> None:
    sent = path.read_bytes()
    ds = dcmread(path, stop_before_pixels=True)
    syntax, got = federation.far.stored[ds.SOPInstanceUID]
    assert syntax == ds.file_meta.TransferSyntaxUID
    assert got == sent[dataset_offset(sent) :]


@pytest.mark.dcmtk
@pytest.mark.parametrize(
    ("compress", "syntax", "option"),
    [
        ("dcmcjpeg", "1.2.840.10008.1.2.4.50", "-xy"),  # JPEG baseline (process 1), 8 bits
        ("dcmcjpls", "1.2.840.10008.1.2.4.80", "-xt"),  # JPEG-LS lossless
    ],
)
def test_a_compressed_instance_is_stored_as_sent_byte_for_byte(
    federation: Federation, tmp_path: Path, compress: str, syntax: str, option: str
) -> None:
    """PS3.5 A.4: an instance in a compressed transfer syntax the far PACS accepts is
    relayed as it is (the relay neither decodes nor re-encodes it)."""
    [plain] = write_study(StudySpec(instances_per_series=1, rows=256, columns=256), tmp_path / "in")
    path = tmp_path / "compressed.dcm"
    extra = ["--encode-baseline"] if compress == "dcmcjpeg" else []
    done = dcmtk.run(compress, *extra, str(plain), str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    _storescu(federation.a.dicom_port, path, option)
    _stored_as_sent(federation, path)


@pytest.mark.dcmtk
def test_an_instance_of_tens_of_megabytes_is_stored_byte_for_byte(
    federation: Federation, tmp_path: Path
) -> None:
    """A 32 MB data set: 64 envelopes of 512 KiB each, reassembled in order."""
    spec = StudySpec(instances_per_series=1, rows=4000, columns=4000)
    [path] = write_study(spec, tmp_path)
    assert path.stat().st_size > 32_000_000
    _storescu(federation.a.dicom_port, path)
    _stored_as_sent(federation, path)
