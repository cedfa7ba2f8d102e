"""`isthmus retrieve`: bring a study or series from a peer into the local archive."""

from __future__ import annotations

import errno
import logging
import ssl
from dataclasses import replace
from typing import Any

from pydicom.dataset import Dataset
from tqdm import tqdm

from isthmus.archive import Archive
from isthmus.config import Peer, Settings
from isthmus.dimse import scu
from isthmus.dimse.scp import start_scp
from isthmus.node.access import AccessControl
from isthmus.node.tls import peer_context

log = logging.getLogger(__name__)


def retrieve_identifier(study: str, series: str | None) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series else "STUDY"
    ds.StudyInstanceUID = study
    if series:
        ds.SeriesInstanceUID = series
    return ds


def retrieve_into_archive(
    settings: Settings,
    peer: Peer,
    study: str,
    series: str | None,
    via: str,
    port: int | None = None,
) -> scu.RetrieveReport:
    """C-GET, or C-MOVE to ourselves, storing what arrives in the local archive.

    For C-MOVE the peer must know our AE title; we listen on `port` (default: our
    DICOM port).  If that port is taken by a running `isthmus serve` on the same
    archive, it receives the instances instead.
    """
    identifier = retrieve_identifier(study, series)
    tls = peer_context(settings, peer)
    archive = Archive.from_settings(settings)
    bar = tqdm(unit="instance", desc="retrieve")

    def progress(status: Dataset) -> None:
        done = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
        left = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
        bar.total = done + left + int(status.get("NumberOfFailedSuboperations", 0) or 0)
        bar.n = done
        bar.refresh()

    try:
        if via == "get":
            return scu.get(
                peer,
                identifier,
                lambda event: _store(archive, event),
                scu.common_storage_classes(),
                calling_aet=settings.aet,
                progress=progress,
                tls=tls,
            )
        return _move_to_self(settings, archive, peer, identifier, port, progress, tls)
    finally:
        bar.close()
        archive.close()


def _store(archive: Archive, event: Any) -> int:
    """The C-STORE handler of a fetch: its status is the outcome's (PS3.4 B.2.3)."""
    result = archive.store(
        event.request.DataSet.getbuffer(),
        event.context.transfer_syntax,
        source_aet=event.assoc.requestor.ae_title,
    )
    return result.dimse_status


def receiving_settings(settings: Settings, peer: Peer, port: int | None) -> Settings:
    """The settings of the port that receives a C-MOVE to ourselves: the C-STOREs of its
    sub-operations come from `peer` (PS3.4 C.4.2.2), so `peer` is a known peer there.
    On loopback anyone may store (developer mode); beyond it the store rule stays the
    configured one, "known" by default (docs/security.md), so that no other caller on
    the network can store into the archive while the retrieve runs."""
    peers = settings.peers if settings.peer(peer.aet) else (*settings.peers, peer)
    access = {**settings.access, "store": "any"} if settings.on_loopback else settings.access
    return replace(settings, dicom_port=port or settings.dicom_port, peers=peers, access=access)


def _move_to_self(
    settings: Settings,
    archive: Archive,
    peer: Peer,
    identifier: Dataset,
    port: int | None,
    progress: Any,
    tls: ssl.SSLContext | None = None,
) -> scu.RetrieveReport:
    local = receiving_settings(settings, peer, port)
    router = None
    try:
        router = start_scp(archive, local, AccessControl(local))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.info("port %d is in use: assuming a running isthmus serve receives", local.dicom_port)
    try:
        return scu.move(
            peer, identifier, settings.aet, calling_aet=settings.aet, progress=progress, tls=tls
        )
    finally:
        if router is not None:
            router.shutdown()
            router.server_close()
