"""The transfer protocol end to end on a real WebRTC data channel (aiolibdatachannel),
between two archives in this process: byte-identical, a corrupted chunk refetched, an
interrupted transfer resumed asking only for what is missing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiolibdatachannel")

from isthmus.archive import Archive, InstanceRow
from isthmus.p2p.channel import Peer
from isthmus.p2p.receiver import Progress, Receiver, TransferFailed
from isthmus.p2p.sender import Sender, SendReport, Tamper
from isthmus.testing.generate import StudySpec, study

pytestmark = pytest.mark.timeout(120)


def make_archive(folder: Path) -> Archive:
    folder.mkdir(parents=True)
    return Archive(f"sqlite:///{folder / 'index.db'}", f"file://{folder / 'blobs'}")


def stored_bytes(archive: Archive, study_uid: str) -> dict[str, bytes]:
    return {r.sop_instance_uid: archive.read_instance(r) for r in archive.instances(study_uid)}


@pytest.fixture
def source(tmp_path: Path) -> tuple[Archive, str]:
    archive = make_archive(tmp_path / "source")
    spec = StudySpec(series_count=2, instances_per_series=6, rows=256, columns=256)
    uid = ""
    from io import BytesIO

    for ds in study(spec):
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        assert archive.store(buffer.getvalue()).ok
        uid = ds.StudyInstanceUID
    return archive, uid


async def transfer(
    sender: Sender, receiver: Receiver, stop_after: int | None = None
) -> tuple[SendReport, Progress | None]:
    """Connect two peers, run both ends; `stop_after` cancels the receiver once it stored
    that many instances (the fetching side stopped mid-transfer)."""
    fetching, sharing = Peer(), Peer()
    try:
        offer = await fetching.offer()
        await fetching.accept(await sharing.answer(offer))
        near, far = await asyncio.gather(fetching.channel(), sharing.channel())
        serving = asyncio.create_task(sender.serve(far))
        receiving = asyncio.create_task(receiver.run(near))
        if stop_after is not None:

            def stop(progress: Progress) -> None:  # on the loop, as soon as it is stored
                if progress.stored >= stop_after:
                    receiving.cancel()

            receiver.on_progress = stop
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(receiving, 60)
            await fetching.close()
            return await asyncio.wait_for(serving, 30), None
        progress = await asyncio.wait_for(receiving, 60)
        return await asyncio.wait_for(serving, 30), progress
    finally:
        await fetching.close()
        await sharing.close()


def test_a_shared_study_arrives_byte_identical(source: tuple[Archive, str], tmp_path: Path) -> None:
    archive, uid = source
    target = make_archive(tmp_path / "target")
    report, progress = asyncio.run(transfer(Sender(archive, uid), Receiver(target)))
    assert progress is not None and progress.complete and progress.stored == 12
    assert report.complete
    assert stored_bytes(target, uid) == stored_bytes(archive, uid)


def test_a_corrupted_chunk_is_fetched_again_and_the_study_is_identical(
    source: tuple[Archive, str], tmp_path: Path
) -> None:
    archive, uid = source
    target = make_archive(tmp_path / "target")
    spoiled: list[tuple[int, int]] = []

    def tamper(position: int, number: int, data: bytes) -> bytes:
        if position == 3 and not spoiled:
            spoiled.append((position, number))
            return data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        return data

    hook: Tamper = tamper
    report, progress = asyncio.run(transfer(Sender(archive, uid, tamper=hook), Receiver(target)))
    assert spoiled and progress is not None and progress.refetched == 1 and progress.complete
    assert stored_bytes(target, uid) == stored_bytes(archive, uid)


def test_a_stopped_fetch_resumes_asking_only_for_what_it_lacks(
    source: tuple[Archive, str], tmp_path: Path
) -> None:
    archive, uid = source
    target = make_archive(tmp_path / "target")
    # One chunk requested at a time, so at most 5 + STORES + 1 instances are stored.
    asyncio.run(transfer(Sender(archive, uid), Receiver(target, window=1), stop_after=5))
    held = {r.sop_instance_uid for r in target.instances(uid)}
    assert 5 <= len(held) < 12
    report, progress = asyncio.run(transfer(Sender(archive, uid), Receiver(target)))
    assert progress is not None and progress.complete and progress.already == len(held)
    manifest_uids = {r.sop_instance_uid for r in archive.instances(uid)}
    assert len(report.requested) == len(manifest_uids) - len(held)
    assert stored_bytes(target, uid) == stored_bytes(archive, uid)


def test_revoking_during_a_transfer_stops_it(source: tuple[Archive, str], tmp_path: Path) -> None:
    archive, uid = source
    target = make_archive(tmp_path / "target")
    answers = iter([True, False])  # allowed at the first check, revoked at the second
    sender = Sender(archive, uid, allowed=lambda: next(answers, False), check_every=0)
    with pytest.raises(TransferFailed, match="revoked"):
        asyncio.run(transfer(sender, Receiver(target, window=2)))
    assert len(target.instances(uid)) < 12


class LyingArchive(Archive):
    """A sharing node whose manifest does not name what it sends: `rename` changes the
    rows the manifest is made of; the bytes sent are the stored ones."""

    def __init__(
        self, folder: Path, study_uid: str, rename: Callable[[int, InstanceRow], InstanceRow]
    ) -> None:
        super().__init__(f"sqlite:///{folder / 'index.db'}", f"file://{folder / 'blobs'}")
        self.real_study, self.rename = study_uid, rename

    def instances(self, *args: Any, **kwargs: Any) -> list[InstanceRow]:
        rows = super().instances(self.real_study)
        return [self.rename(i, row) for i, row in enumerate(rows)]


def test_instances_of_another_study_than_the_manifests_are_refused(
    source: tuple[Archive, str], tmp_path: Path
) -> None:
    """The manifest names study 1.2.3.4 and the instances sent are of another: the
    receiver stores none of them (an instance slipped into a study the fetching node
    holds would pass for that study's) and the transfer is not complete."""
    _, uid = source
    lying = LyingArchive(tmp_path / "source", uid, lambda i, row: row)
    target = make_archive(tmp_path / "target")
    _, progress = asyncio.run(transfer(Sender(lying, "1.2.3.4"), Receiver(target)))
    assert progress is not None and not progress.complete
    assert len(progress.failed) == 12 and progress.stored == 0
    assert target.instances(uid) == []


def test_an_instance_that_is_not_the_one_its_manifest_entry_names_is_refused(
    source: tuple[Archive, str], tmp_path: Path
) -> None:
    archive, uid = source
    renamed = archive.instances(uid)[5].sop_instance_uid

    def rename(i: int, row: InstanceRow) -> InstanceRow:
        return replace(row, sop_instance_uid=row.sop_instance_uid + ".9") if i == 5 else row

    lying = LyingArchive(tmp_path / "source", uid, rename)
    target = make_archive(tmp_path / "target")
    _, progress = asyncio.run(transfer(Sender(lying, uid), Receiver(target)))
    assert progress is not None and not progress.complete
    assert progress.failed == [renamed + ".9"] and progress.stored == 11
    assert renamed not in {r.sop_instance_uid for r in target.instances(uid)}
