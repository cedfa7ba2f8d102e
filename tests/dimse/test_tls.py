"""DICOM TLS with DCMTK's TLS tools and the `isthmus` commands (PS3.15 Annex B, BCP 195;
docs/security.md, "DICOM TLS").

echoscu, storescu, findscu and movescu call the node's TLS port with client
certificates of a throw-away CA; the C-MOVE destination is DCMTK's storescp with TLS,
which requires the node's certificate as client certificate.  `isthmus echo/send/
query/retrieve --tls` call the TLS port the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus import cli
from isthmus.config import Peer, Settings
from isthmus.dimse import scu
from isthmus.dimse.fetch import retrieve_identifier
from isthmus.node.tls import client_context
from isthmus.server import Node
from isthmus.testing import dcmtk
from isthmus.testing.certs import CertificateAuthority, Issued
from isthmus.testing.generate import StudySpec, write_study
from isthmus.testing.net import free_port

from .support import run_ok, sop_uid_of

STUDY_UID = "1.2.826.0.1.3680043.10.1386.9.2762.1"


class Site:
    """The CA, the node's certificate, a modality's and the C-MOVE destination's."""

    def __init__(self, folder: Path) -> None:
        self.ca = CertificateAuthority(folder)
        self.node = self.ca.issue("isthmus")
        self.modality = self.ca.issue("ct01")
        self.destination = self.ca.issue("storescp")

    def tls(self, who: Issued) -> list[str]:
        """DCMTK options: TLS with `who`'s key and certificate, trusting the CA."""
        return ["+tls", str(who.key), str(who.cert), "+cf", str(self.ca.bundle)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return Site(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def destination(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dcmtk.StoreSCP]:
    """DCMTK storescp over TLS, requiring a client certificate from the CA."""
    missing = dcmtk.missing_tools()
    if missing:
        pytest.fail(f"DCMTK tools missing: {missing} (run scripts/system-deps.sh)")
    scp = dcmtk.StoreSCP(
        tmp_path_factory.mktemp("storescp"),
        "STORESCP",
        extra=[*site.tls(site.destination), "--require-peer-cert"],
    )
    with scp:
        yield scp


@pytest.fixture(scope="module")
def node(
    site: Site, destination: dcmtk.StoreSCP, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    folder = tmp_path_factory.mktemp("node")
    settings = Settings(
        data=folder,
        index_url=f"sqlite:///{folder / 'index.sqlite'}",
        http_port=free_port(),
        dicom_port=free_port(),
        dicom_tls_port=free_port(),
        dicom_tls_cert=str(site.node.cert),
        dicom_tls_key=str(site.node.key),
        dicom_tls_ca=str(site.ca.bundle),
        dicom_tls_client_certs="required",
        peers=(
            Peer("CT01", "127.0.0.1", 104, tls=True, certificate="CN=ct01"),
            Peer("STORESCP", "127.0.0.1", destination.port, tls=True),
        ),
    )
    running = Node(settings)
    running.start(http=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    spec = StudySpec(patient_id="PID-TLS", instances_per_series=3, study_uid=STUDY_UID)
    return write_study(spec, tmp_path_factory.mktemp("files"))


def tls_address(node: Node, calling: str = "CT01") -> list[str]:
    return ["-aet", calling, "-aec", node.settings.aet, "127.0.0.1", str(node.dicom_tls_port)]


@pytest.fixture(scope="module")
def stored(node: Node, site: Site, files: list[Path]) -> list[Path]:
    """The study, sent with storescu over TLS."""
    run_ok("storescu", *site.tls(site.modality), *tls_address(node), *map(str, files))
    return files


# ------------------------------------------------------------------------ DCMTK
def test_echoscu_over_tls_with_a_client_certificate(node: Node, site: Site) -> None:
    output = run_ok("echoscu", "-v", *site.tls(site.modality), *tls_address(node))
    assert "Received Echo Response (Success)" in output


@pytest.mark.parametrize(
    "profile, protocol",
    [("+py", "TLSv1.3"), ("+px", "TLSv1.3"), ("+pz", "TLSv1.2")],
    ids=["bcp195-nd", "bcp195", "bcp195-ex"],
)
def test_echoscu_with_each_dcmtk_bcp195_profile(
    node: Node, site: Site, profile: str, protocol: str
) -> None:
    output = run_ok("echoscu", "-d", profile, *site.tls(site.modality), *tls_address(node))
    assert f"Protocol    : {protocol}" in output
    assert "Received Echo Response (Success)" in output


def test_storescu_over_tls_stores_every_instance(node: Node, stored: list[Path]) -> None:
    for path in stored:
        assert node.archive.instances(sop_uid=sop_uid_of(path))


def test_findscu_over_tls_finds_the_study(
    node: Node, site: Site, stored: list[Path], tmp_path: Path
) -> None:
    output = run_ok(
        "findscu",
        "-v",
        "-S",
        *site.tls(site.modality),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={STUDY_UID}",
        "-k",
        "PatientID",
        *tls_address(node),
    )
    assert "PID-TLS" in output


def test_movescu_to_a_tls_storescp_moves_the_study_over_tls(
    node: Node, site: Site, stored: list[Path], destination: dcmtk.StoreSCP
) -> None:
    """Debian's DCMTK 3.6.7 movescu has no TLS: it asks on the plain port; the
    sub-operations go over TLS (the destination peer has `tls`), which storescp requires."""
    for path in destination.received():
        path.unlink()
    output = run_ok(
        "movescu",
        "-v",
        "-S",
        "-aem",
        "STORESCP",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={STUDY_UID}",
        "-aec",
        node.settings.aet,
        "127.0.0.1",
        str(node.dicom_port),
    )
    assert "Received Final Move Response (Success)" in output, output
    assert {sop_uid_of(p) for p in destination.received()} == {sop_uid_of(p) for p in stored}


def test_c_move_over_tls_to_a_tls_storescp_moves_the_study(
    node: Node, site: Site, stored: list[Path], destination: dcmtk.StoreSCP
) -> None:
    """pynetdicom asks over TLS (as CT01, with its certificate); storescp receives over TLS."""
    for path in destination.received():
        path.unlink()
    identifier = retrieve_identifier(STUDY_UID, None)
    context = client_context(
        Settings(
            dicom_tls_ca=str(site.ca.bundle),
            dicom_tls_cert=str(site.modality.cert),
            dicom_tls_key=str(site.modality.key),
        )
    )
    peer = Peer(node.settings.aet, "127.0.0.1", node.dicom_tls_port or 0, tls=True)
    report = scu.move(peer, identifier, "STORESCP", calling_aet="CT01", tls=context)
    assert (report.status, report.completed, report.failed) == (0, 3, 0)
    assert {sop_uid_of(p) for p in destination.received()} == {sop_uid_of(p) for p in stored}


def test_c_move_to_a_tls_destination_refusing_our_certificate_fails_each_sub_operation(
    site: Site, files: list[Path], tmp_path: Path
) -> None:
    """A destination trusting another CA: every sub-operation fails, the node goes on."""
    other = CertificateAuthority(tmp_path / "other", "Other CA")
    options = ["+tls", str(site.destination.key), str(site.destination.cert)]
    strict = dcmtk.StoreSCP(
        tmp_path / "strict", "STRICT", extra=[*options, "+cf", str(other.bundle)]
    )
    with strict:
        settings = Settings(
            data=tmp_path / "data",
            index_url=f"sqlite:///{tmp_path / 'index.sqlite'}",
            dicom_port=free_port(),
            dicom_tls_port=free_port(),
            dicom_tls_cert=str(site.node.cert),
            dicom_tls_key=str(site.node.key),
            dicom_tls_ca=str(site.ca.bundle),
            peers=(Peer("STRICT", "127.0.0.1", strict.port, tls=True),),
        )
        running = Node(settings)
        running.start(http=False)
        try:
            plain = Peer(settings.aet, "127.0.0.1", running.dicom_port)
            assert scu.send(plain, files).sent == 3
            report = scu.move(plain, retrieve_identifier(STUDY_UID, None), "STRICT")
            assert (report.completed, report.failed) == (0, 3)
            assert strict.received() == []
            assert scu.echo(plain) == 0
        finally:
            running.stop()


def test_dcmtk_without_client_certificate_is_refused_where_one_is_required(
    node: Node, site: Site
) -> None:
    done = dcmtk.run("echoscu", "+tla", "+cf", str(site.ca.bundle), *tls_address(node))
    assert done.returncode != 0
    assert "Received Echo Response (Success)" in run_ok(
        "echoscu", "-v", *site.tls(site.modality), *tls_address(node)
    )


def test_dcmtk_plain_on_the_tls_port_and_tls_on_the_plain_port_are_refused(
    node: Node, site: Site
) -> None:
    plain_to_tls = dcmtk.run("echoscu", *tls_address(node, "PLAIN"))
    tls_to_plain = dcmtk.run(
        "echoscu", *site.tls(site.modality), "-aec", "ISTHMUS", "127.0.0.1", str(node.dicom_port)
    )
    assert plain_to_tls.returncode != 0 and tls_to_plain.returncode != 0
    plain = run_ok("echoscu", "-v", "-aec", "ISTHMUS", "127.0.0.1", str(node.dicom_port))
    assert "Received Echo Response (Success)" in plain


def test_modality_required_to_use_tls_is_rejected_on_the_plain_port(node: Node) -> None:
    done = dcmtk.run(
        "echoscu", "-aet", "CT01", "-aec", "ISTHMUS", "127.0.0.1", str(node.dicom_port)
    )
    assert done.returncode != 0
    assert "Calling AE Title Not Recognized" in done.stdout + done.stderr


# ------------------------------------------------------------- isthmus commands
def tls_flags(site: Site, who: Issued) -> list[str]:
    return [
        "--tls",
        "--dicom-tls-ca",
        str(site.ca.bundle),
        "--dicom-tls-cert",
        str(who.cert),
        "--dicom-tls-key",
        str(who.key),
    ]


def target(node: Node) -> str:
    return f"{node.settings.aet}@127.0.0.1:{node.dicom_tls_port}"


def test_isthmus_echo_send_and_query_over_tls(
    node: Node, site: Site, files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [*tls_flags(site, site.modality), "--aet", "CT01", "--data", str(tmp_path)]
    assert cli.main(["echo", target(node), *flags]) == 0
    assert cli.main(["send", target(node), str(files[0]), *flags]) == 0
    keys = [f"StudyInstanceUID={STUDY_UID}", "PatientID"]
    assert cli.main(["query", target(node), "--level", "study", *flags, *keys]) == 0
    out = capsys.readouterr().out
    assert "status 0x0000" in out and "sent 1 of 1" in out and "PID-TLS" in out


def test_isthmus_echo_without_tls_flag_cannot_call_the_tls_port(node: Node, tmp_path: Path) -> None:
    assert cli.main(["echo", target(node), "--data", str(tmp_path)]) == 1


def test_isthmus_retrieve_over_tls_with_c_get(
    node: Node, site: Site, stored: list[Path], tmp_path: Path
) -> None:
    data = tmp_path / "local"
    flags = [*tls_flags(site, site.modality), "--aet", "CT01", "--data", str(data)]
    assert cli.main(["retrieve", target(node), "--study", STUDY_UID, "--via", "get", *flags]) == 0
    local = Node(Settings(data=data, dicom_port=free_port(), http_port=free_port()))
    try:
        assert {sop_uid_of(p) for p in stored} <= {
            row.sop_instance_uid for row in local.archive.instances(study_uid=STUDY_UID)
        }
    finally:
        local.archive.close()


def test_a_forwarding_rule_to_a_tls_peer_sends_over_tls(
    site: Site, destination: dcmtk.StoreSCP, tmp_path: Path
) -> None:
    """A peer with `tls` must be called over TLS by every door (docs/security.md, "DICOM
    TLS"): the forwarding job's association too, which storescp (TLS only, requiring our
    certificate) would not take in plain TCP."""
    for path in destination.received():
        path.unlink()
    settings = Settings(
        data=tmp_path / "data",
        index_url=f"sqlite:///{tmp_path / 'index.sqlite'}",
        dicom_port=free_port(),
        dicom_tls_cert=str(site.node.cert),
        dicom_tls_key=str(site.node.key),
        dicom_tls_ca=str(site.ca.bundle),
        peers=(Peer("STORESCP", "127.0.0.1", destination.port, tls=True),),
        forward=({"name": "all", "to": "STORESCP", "settle": 0.2},),
        job_retry_base=0.2,
        check_on_start=False,
    )
    files = write_study(
        StudySpec(patient_id="PID-TLS-FWD", instances_per_series=2), tmp_path / "files"
    )
    with Node(settings) as running:
        assert scu.send(Peer(settings.aet, "127.0.0.1", running.dicom_port), files).sent == 2
        deadline = time.monotonic() + 60
        while {sop_uid_of(p) for p in destination.received()} != {sop_uid_of(f) for f in files}:
            jobs = running.archive.jobs.search(kind="forward")
            assert time.monotonic() < deadline, jobs
            time.sleep(0.2)
        (job,) = running.archive.jobs.search(kind="forward")
        assert job.counts["done"] == 2 and job.attempts == 1, job
