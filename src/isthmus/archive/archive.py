"""The Archive: the only thing that stores, finds, reads and deletes instances.

Every door (DIMSE, DICOMweb, WebSocket gateway, relay, peers) calls this API; none
touches the index or the blob store itself.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from isthmus.archive import index as idx
from isthmus.archive import routes
from isthmus.archive.activity import Activity
from isthmus.archive.bulk import BulkData, open_bulk_data, pixel_data_as_frames
from isthmus.archive.connections import for_reads
from isthmus.archive.consistency import survey
from isthmus.archive.deidentify import DeidentifiedStudies, deidentify_studies, project_key
from isthmus.archive.events import EventBus, LocalEventBus
from isthmus.archive.events_postgres import PostgresEventBus
from isthmus.archive.index import InstanceRow
from isthmus.archive.ingest import InstanceRecord, build_record
from isthmus.archive.integrity import Integrity
from isthmus.archive.jobs import Jobs
from isthmus.archive.keys import add_parent_attributes
from isthmus.archive.matching import FindResult, Query, find
from isthmus.archive.outcome import StoreOutcome, StoreResult, StoreWarning
from isthmus.archive.performed import PerformedSteps
from isthmus.archive.prepared import Prepared
from isthmus.archive.relay_transfers import RelayTransfers
from isthmus.archive.shares import Shares
from isthmus.archive.storage import BlobStore, BlobStoreUnavailable, open_blob_store
from isthmus.archive.workitems import WorkItems
from isthmus.archive.writer import GroupCommitWriter
from isthmus.deid import DeidentificationOptions, Deidentifier, Excluded
from isthmus.dicom import part10, uids
from isthmus.dicom.part10 import InvalidDicom

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from isthmus.render.frames import Frame
    from isthmus.render.pixel_data import HeaderCache, PixelData

log = logging.getLogger(__name__)

# Seconds a blob, temporary file or row must have existed before check() of a shared
# archive (PostgreSQL) treats it as a crash's leftover and not as another process's
# store in progress.  Far longer than a store takes between its blob and its commit.
SHARED_GRACE = 600.0
# Seconds after which a staged blob may have been taken for an orphan by such a check
# (half the grace: the check ages blobs by their modification time, a clock of its own
# machine or of S3's), so that its commit makes sure the blob is still there.
STAGED_RECHECK = SHARED_GRACE / 2
# The topic that says parents were deleted (their primary keys must not be reused).
PARENTS_CHANGED = "archive.index.parents"


# The statements every store runs, compiled once per dialect and run on the DB-API
# cursor (prepared.py says why).
_FIND_INSTANCE = Prepared(
    sa.select(idx.instance.c.pk, idx.instance.c.blob_key, idx.instance.c.series_pk).where(
        idx.instance.c.sop_instance_uid == sa.bindparam("sop_instance_uid")
    )
)
_SERIES_OWNER = Prepared(
    sa.select(idx.series.c.study_pk).where(idx.series.c.pk == sa.bindparam("series_pk"))
)
_INSERT_INSTANCE = Prepared(idx.insert_instance, per_columns=True)


class HierarchyConflict(Exception):
    """An instance whose series is filed under another study (PS3.3 C.7.3: a series
    belongs to one study); refused, not silently filed under the wrong study."""


class Archive:
    """Instances in a blob store, indexed in a relational database."""

    def __init__(
        self,
        index_url: str,
        blob_url: str,
        duplicates: str = "keep",
        durable: bool = True,
        events: EventBus | None = None,
    ) -> None:
        """`durable=False` skips fsync (blobs) and relaxes SQLite to synchronous=NORMAL:
        success then survives a crash of Isthmus but not of the machine.  Only for
        scratch archives and like-for-like benchmarks against servers that never
        fsync (DCMTK's storescp).  `events`: the bus of a worker process on SQLite
        (events_workers.py); by default PostgreSQL's or the in-process one."""
        self.engine = idx.create_engine(index_url, durable)
        self.reads = for_reads(self.engine)  # autocommit on PostgreSQL (connections.py)
        idx.migrate(self.engine)
        with self.engine.begin() as conn:
            idx.refresh_statistics(conn)
        self._written = 0  # instances indexed since open (writer thread), for statistics
        self.blobs: BlobStore = open_blob_store(blob_url, durable)
        self.duplicates = duplicates
        # Primary keys of patients/studies/series already in the index, so that the
        # instances of a series do not look their parents up again.  Only the writer
        # thread touches it; deletes and failed batches clear it.
        self._parents: dict[tuple[str | int, ...], int] = {}
        self.writer = GroupCommitWriter(
            self.engine,
            on_failure=self._parents.clear,
            lock_path=idx.writer_lock_path(self.engine),
            on_stale=self._parents.clear,  # another worker on this SQLite file deleted parents
        )
        self._pixel_headers: HeaderCache | None = None  # made at the first rendering
        # What happened, for doors and (when processes share the archive) other processes:
        # PostgreSQL's LISTEN/NOTIFY carries events between the processes of one index.
        if events is None:
            events = (
                PostgresEventBus(self.engine.url)
                if self.engine.dialect.name == "postgresql"
                else LocalEventBus()
            )
        self.events: EventBus = events
        # Another process deleted parents: their cached primary keys are stale.
        self.events.subscribe(PARENTS_CHANGED, lambda _event: self._parents.clear())
        # This process, in the AE titles it registers for other doors (routes.py).
        self.process = routes.process_name()
        self._closed = False
        # The facts doors publish on it for the audit trail and the metrics (activity.py).
        self.activity = Activity(self.events)
        # Work items (UPS, PS3.4 Annex CC): one store for every workflow door.
        self.workitems = WorkItems(self.engine, self.events)
        # Persistent jobs in the index (forwarding, retention, C-MOVE that outlives its
        # association); the worker threads are the node's (server.py).
        self.jobs = Jobs(self.engine, self.events)
        self.performed_steps = PerformedSteps(self.engine, self.workitems)
        # Relay transfers this site receives, resumable after a restart (relay door).
        self.relay_transfers = RelayTransfers(self.engine)
        # Share links of peer-to-peer sharing (p2p door, docs/p2p.md).
        self.shares = Shares(self.engine)

    @classmethod
    def from_settings(cls, settings: Any, events: EventBus | None = None) -> Archive:
        settings.data.mkdir(parents=True, exist_ok=True)
        return cls(
            settings.resolved_index_url,
            settings.resolved_blob_url,
            settings.duplicates,
            settings.durable,
            events,
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            routes.forget_process(self)
        except Exception:  # the index may be gone; the next start of this port cleans up
            log.warning("cannot remove the AE titles this process registered")
        self.events.close()
        self.writer.close()
        self.engine.dispose()
        self.blobs.close()

    # ------------------------------------------------------------------ store
    def store(
        self,
        data: bytes | memoryview,
        transfer_syntax: str | None = None,
        source_aet: str | None = None,
        expected: tuple[str | None, str] | None = None,
        expected_study: str | None = None,
    ) -> StoreResult:
        """Store one instance durably; success means blob and index row are on disk.

        `data` is a Part 10 file, or a bare dataset encoded in `transfer_syntax`
        (as received in a C-STORE).  Pixel data is never decoded.  `expected` is the
        (SOP Class UID, SOP Instance UID) the sender announced (PS3.4 B.2.3: a dataset
        that does not match them is refused with 0xA900; a None class is not checked: a
        p2p manifest names the instance only); `expected_study` the study a study-scoped
        STOW-RS or a p2p manifest names (PS3.18 10.5.1: instances of other studies are
        refused).  Five steps: parse, check, write (blob), index, settle (durable, then
        the answer); each refusal is a `StoreOutcome` (outcome.py says its statuses).
        """
        try:
            header = _parse(data, transfer_syntax, source_aet)
        except InvalidDicom as exc:
            return _invalid_result(exc)
        result = _result_of(header)
        try:
            _check(result, expected, expected_study)
            key, record = self._write(header, result, source_aet)
            pending = self._submit_index(result, key, record)
            self._settle(result, key, pending)
        except _Refused as refused:
            result.outcome, result.reason = refused.outcome, refused.reason
            return result
        if result.outcome is not StoreOutcome.DUPLICATE:
            self._stored(result, _modality(header), source_aet)
        return result

    def stage(
        self,
        data: bytes | memoryview,
        source_aet: str | None = None,
        expected_study: str | None = None,
    ) -> Staged | StoreResult:
        """The first half of `store` for a request of several instances that must be
        whole before any is accepted (a STOW-RS body, PS3.18 10.5): parse, check, write
        the blob and make it durable, but index nothing.  A staged instance is invisible
        to every reader until `commit`; `abandon` removes it, and after a crash check()
        finds its blob without a row and removes it.  A refusal is a StoreResult."""
        try:
            header = _parse(data, None, source_aet)
        except InvalidDicom as exc:
            return _invalid_result(exc)
        result = _result_of(header)
        try:
            _check(result, None, expected_study)
            key, record = self._write(header, result, source_aet)
            self._sync_staged(result, key)
        except _Refused as refused:
            result.outcome, result.reason = refused.outcome, refused.reason
            return result
        return Staged(result, key, record, _modality(header), source_aet)

    def commit(self, staged: Sequence[Staged]) -> list[StoreResult]:
        """Index staged instances, all submitted before any is waited for (the writer
        commits them in as few batches as it can); a result per instance, in order."""
        pending: list[Any] = []
        for item in staged:
            try:
                pending.append(self._submit_index(item.result, item.key, item.record))
            except _Refused as refused:
                pending.append(refused)
        results = []
        for item, waiting in zip(staged, pending, strict=True):
            result = item.result
            try:
                if isinstance(waiting, _Refused):
                    raise waiting
                self._indexed(result, item.key, waiting, None, functools.partial(self._kept, item))
            except _Refused as refused:
                result.outcome, result.reason = refused.outcome, refused.reason
            else:
                if result.outcome is not StoreOutcome.DUPLICATE:
                    self._stored(result, item.modality, item.source_aet)
            results.append(result)
        return results

    def abandon(self, staged: Iterable[Staged]) -> None:
        """Remove staged instances that will not be committed (their request failed)."""
        for item in staged:
            self.blobs.delete(item.key)

    def _kept(self, item: Staged) -> OSError | None:
        """Once its row is committed: is a long-staged blob still there, whole?  A request
        that arrives for longer than `SHARED_GRACE` (a large STOW-RS body on a slow link)
        has staged blobs that another process's check (a worker started again, a process
        joining, docs/scaling.md) takes for a crash's orphans and removes; acknowledged,
        such an instance would be a row without its blob.  The error that refuses it, or
        None (always None for a blob staged less than `STAGED_RECHECK` ago: no check can
        have taken it yet, and it costs nothing)."""
        if time.monotonic() - item.staged_at < STAGED_RECHECK:
            return None
        try:
            size = self.blobs.size(item.key)
        except KeyError:
            size = -1
        if size == item.record.instance["size"]:
            return None
        return FileNotFoundError(
            errno.ENOENT,
            "its staged file was removed while the request arrived (a consistency check "
            "took it for a leftover); send it again",
        )

    def _sync_staged(self, result: StoreResult, key: str) -> None:
        try:
            self.blobs.sync(key)
        except OSError as exc:
            self.activity.error("blob")
            self.blobs.delete(key)
            raise _write_failed(result, exc) from exc

    def _stored(self, result: StoreResult, modality: str | None, source_aet: str | None) -> None:
        """Tell this process's other parts (forwarding rules) an instance is stored: the
        process that stored it queues the forward jobs, which any process may then run."""
        self.events.publish(
            "instance.stored",
            {
                "study": result.study_instance_uid,
                "series": result.series_instance_uid,
                "sop_instance": result.sop_instance_uid,
                "sop_class": result.sop_class_uid,
                "modality": modality,
                "source_aet": (source_aet or "").strip() or None,
            },
            local=True,
        )

    def _write(
        self, header: part10.Header, result: StoreResult, source_aet: str | None
    ) -> tuple[str, InstanceRecord]:
        """Write the blob (file meta + the dataset as received), not yet synced.

        The blob is complete and renamed before its row is submitted, so readers never
        see a row without its file; its fsync overlaps the index commit (`_settle`)."""
        assert result.sop_instance_uid and result.sop_class_uid and result.study_instance_uid
        meta = part10.file_meta(
            result.sop_class_uid, result.sop_instance_uid, header.transfer_syntax, source_aet
        )
        key = _blob_key(result.study_instance_uid, result.sop_instance_uid)
        try:
            size = self.blobs.put(key, (meta, header.dataset_bytes), sync=False)
        except OSError as exc:
            self.activity.error("blob")
            raise _write_failed(result, exc) from exc
        offset = None if header.pixel_offset is None else len(meta) + header.pixel_offset
        try:
            return key, build_record(header, key, size, source_aet, offset)
        except Exception as exc:
            self.blobs.delete(key)
            raise _Refused(StoreOutcome.PROCESSING_FAILURE, f"index write failed: {exc}") from exc

    def _submit_index(self, result: StoreResult, key: str, record: InstanceRecord) -> Any:
        """Queue the instance's rows for the group-commit writer (committed in `_settle`)."""
        try:
            return self.writer.submit(lambda conn: self._index(conn, record))
        except Exception as exc:
            self.blobs.delete(key)
            raise _Refused(StoreOutcome.PROCESSING_FAILURE, f"index write failed: {exc}") from exc

    def _settle(self, result: StoreResult, key: str, pending: Any) -> StoreResult:
        """Sync the blob while the index commits; success only when both are durable.

        A crash in between leaves an unreported row whose blob check() finds incomplete
        and removes.  A duplicate kept as it was drops the new blob; an overwrite drops
        the old one, after the commit."""
        sync_error = None
        try:
            self.blobs.sync(key)
        except OSError as exc:
            sync_error = exc
        return self._indexed(result, key, pending, sync_error)

    def _indexed(
        self,
        result: StoreResult,
        key: str,
        pending: Any,
        sync_error: OSError | None,
        kept: Callable[[], OSError | None] | None = None,
    ) -> StoreResult:
        """Wait for the instance's index commit and settle what it found (see `_settle`);
        `kept`: asked once a new row is committed whether its blob is still there (a
        staged one, `commit`), an error refusing the instance when not."""
        try:
            outcome, old_key = pending.wait()
        except HierarchyConflict as exc:
            self.blobs.delete(key)
            log.warning("store %s refused: %s", result.sop_instance_uid, exc)
            raise _Refused(StoreOutcome.SERIES_IN_OTHER_STUDY, str(exc)) from exc
        except Exception as exc:
            self.blobs.delete(key)
            self.activity.error("index")
            log.exception("store %s: index write failed", result.sop_instance_uid)
            raise _Refused(StoreOutcome.PROCESSING_FAILURE, f"index write failed: {exc}") from exc
        if sync_error is None and kept is not None and outcome == "stored":
            sync_error = kept()
        if sync_error is not None:
            self.activity.error("blob")
            if outcome == "stored":
                self._forget(result.sop_instance_uid or "", key)
            self.blobs.delete(key)
            raise _write_failed(result, sync_error) from sync_error
        if outcome == "duplicate":  # nothing of what was sent is kept: nothing changed
            self.blobs.delete(key)
            result.outcome = StoreOutcome.DUPLICATE
            result.warning, result.discarded, result.reason = None, (), None
        if old_key:
            self.blobs.delete(old_key)
            result.outcome = StoreOutcome.OVERWRITTEN
        return result

    def _forget(self, sop_instance_uid: str, key: str) -> None:
        """Remove an index row whose blob could not be made durable."""

        def job(conn: Connection) -> None:
            conn.execute(idx.instance.delete().where(idx.instance.c.blob_key == key))
            self.parents_changed(conn)

        try:
            self.writer.run(job)
        except Exception:
            log.exception("cannot remove the row of %s; check() will", sop_instance_uid)

    def _index(self, conn: Connection, record: InstanceRecord) -> tuple[str, str | None]:
        """Insert the rows of one instance; returns (outcome, blob key to delete)."""
        values = record.instance  # the instance row, its parent's key added below
        if self.duplicates == "keep":
            series_pk = self._known_series(record)
            if series_pk is not None:  # the insert alone tells a duplicate
                values["series_pk"] = series_pk
                return self._insert(conn, record)
        existing = _FIND_INSTANCE.first(conn, values)
        if existing and self.duplicates == "keep":
            return "duplicate", None
        study_pk = None if existing else self._known_study(conn, record)
        if study_pk is None:  # a new study (or "overwrite": its patient may change)
            patient_pk = self._parent(conn, _PATIENTS, record.patient)
            study_pk = self._parent(conn, _STUDIES, record.study, patient_pk=patient_pk)
        series_pk = self._parent(conn, _SERIES, record.series, study_pk=study_pk)
        values["series_pk"] = series_pk
        if existing:  # "overwrite": the new copy replaces the old one, in its parents too
            old_pk, old_key, old_series_pk = existing
            conn.execute(idx.instance.update().where(idx.instance.c.pk == old_pk).values(values))
            moved = _refresh_parents(conn, record, patient_pk, study_pk, series_pk)
            if moved or old_series_pk != series_pk:
                self.parents_changed(conn)
            return "stored", old_key
        owner = self._parents.get(("series-study", series_pk))
        if owner is None:
            found = _SERIES_OWNER.first(conn, values)
            assert found is not None, "the series row was just found or created"
            owner = self._parents[("series-study", series_pk)] = found[0]
        if owner != study_pk:
            raise HierarchyConflict(
                f"series {record.series['series_instance_uid']} belongs to another study"
            )
        return self._insert(conn, record)

    def _known_study(self, conn: Connection, record: InstanceRecord) -> int | None:
        """The key of the instance's study if it is indexed already, or None.  An instance
        of a known study is filed under the study's patient (its first instance represents
        it), so no patient row is looked up or made for it: one naming another patient
        would be left without studies, and a PATIENT level query would list it."""
        study_pk = self._found(conn, _STUDIES, record.study)
        if study_pk is not None:  # cached too when it exists: `_known_series` needs it
            self._found(conn, _PATIENTS, record.patient)
        return study_pk

    def _found(self, conn: Connection, level: _Parents, values: dict[str, Any]) -> int | None:
        """The key of an existing patient, study or series row (cached), or None."""
        key = level.cache_key(values)
        pk = self._parents.get(key)
        if pk is None:
            pk = level.find(conn, values)
            if pk is not None:
                self._remember(key, pk)
        return pk

    def _known_series(self, record: InstanceRecord) -> int | None:
        """The series' key when patient, study and series are all cached and the series
        is the study's: then nothing but the instance row can be written, and a
        duplicate is one whatever the order of the checks (the common case: every
        instance of a series after its first).  None when something must be looked up."""
        parents = self._parents
        if parents.get(_PATIENTS.cache_key(record.patient)) is None:
            return None
        study_pk = parents.get(_STUDIES.cache_key(record.study))
        series_pk = parents.get(_SERIES.cache_key(record.series))
        if study_pk is None or series_pk is None:
            return None
        if parents.get(("series-study", series_pk)) != study_pk:
            return None  # not cached, or a hierarchy conflict: the full path says which
        return series_pk

    def _insert(self, conn: Connection, record: InstanceRecord) -> tuple[str, str | None]:
        """Insert the instance row (its series key set), unless the SOP Instance UID is
        already there."""
        if _INSERT_INSTANCE.first(conn, record.instance) is None:
            # Stored before (keep) or by another process since the lookup (overwrite; its
            # row is committed: the insert waited for it).  A duplicate like any other.
            if self.duplicates == "keep":
                return "duplicate", None
            return self._index(conn, record)
        self._written += 1
        if idx.statistics_due(self._written):
            idx.refresh_statistics(conn)
        return "stored", None

    def _parent(
        self, conn: Connection, level: _Parents, values: dict[str, Any], **parent: int
    ) -> int:
        """The key of the patient, study or series row of `values` (found, or inserted
        with its own parent's key `parent`), from the cache when it is there."""
        key = level.cache_key(values)
        pk = self._parents.get(key)
        if pk is None:
            pk = self._remember(key, level.key(conn, {**values, **parent}))
        return pk

    def _remember(self, key: tuple[str, ...], pk: int) -> int:
        """Keep a parent's key in the cache (bounded: emptied past 10,000 keys)."""
        if len(self._parents) > 10_000:
            self._parents.clear()
        self._parents[key] = pk
        return pk

    def parents_changed(self, conn: Connection) -> None:
        """Within a write job: delete parents left empty, and tell this process's and
        the other processes' writers that cached parent keys may be stale."""
        _delete_empty_parents(conn)
        self._parents.clear()
        self.writer.changed()  # SQLite reuses freed keys: other workers' writers, at once
        self.events.publish(PARENTS_CHANGED, {"process": self.process})

    # ---------------------------------------------------------------- routes
    # AE titles other doors registered at run time (a browser through the WebSocket
    # gateway), shared by every process of the archive: a C-MOVE arriving at one process
    # sends to the DICOM port of the process that holds the AE title (docs/scaling.md).
    def register_route(self, aet: str, host: str, port: int) -> None:
        """Record that `aet` is reachable through this process's DICOM port host:port."""
        routes.register(self, aet, host, port)

    def unregister_route(self, aet: str) -> None:
        """Forget `aet`, if this process registered it."""
        routes.unregister(self, aet)

    def route(self, aet: str) -> tuple[str, int, bool] | None:
        """(host, port, registered by this process) of a registered AE title, or None."""
        return routes.lookup(self, aet)

    def forget_routes_at(self, host: str, port: int) -> None:
        """Drop the AE titles an earlier life of a process listening at host:port left."""
        routes.forget_address(self, host, port)

    # ------------------------------------------------------------------ read
    def contains(self, sop_instance_uid: str) -> bool:
        with self.reads.connect() as conn:
            return (
                conn.execute(
                    sa.select(idx.instance.c.pk).where(
                        idx.instance.c.sop_instance_uid == sop_instance_uid
                    )
                ).first()
                is not None
            )

    def find(self, query: Query) -> FindResult:
        """Match a C-FIND / QIDO-RS query (PS3.4 C.2.2.2); returns DICOM JSON datasets."""
        with self.reads.connect() as conn:
            return find(conn, query)

    def patients_of(self, study_uids: Collection[str]) -> dict[str, tuple[str, str]]:
        """Study Instance UID → (Patient ID, Patient's Name) of the studies stored, for
        the audit trail's participant objects (PS3.15 A.5.3)."""
        if not study_uids:
            return {}
        st, p = idx.study.c, idx.patient.c
        query = (
            sa.select(st.study_instance_uid, p.patient_id, p.patient_name)
            .select_from(idx.study.join(idx.patient))
            .where(st.study_instance_uid.in_(list(study_uids)))
        )
        with self.reads.connect() as conn:
            return {uid: (pid or "", name or "") for uid, pid, name in conn.execute(query)}

    def ready(self) -> None:
        """Raise when the index or the blob store cannot be reached (for /readyz)."""
        with self.reads.connect() as conn:
            conn.execute(sa.select(1))
        self.blobs.check()

    def add_parent_attributes(
        self,
        level: str,
        matches: list[dict[str, Any]],
        study: str | None = None,
        series: str | None = None,
    ) -> None:
        """Complete lower-level QIDO-RS matches with their study (and series)
        attributes, unless the search was scoped to one (PS3.18 10.6.3.3)."""
        add_parent_attributes(self.find, level, matches, study, series)

    def instances(
        self,
        study_uid: str | Sequence[str] | None = None,
        series_uid: str | Sequence[str] | None = None,
        sop_uid: str | Sequence[str] | None = None,
    ) -> list[InstanceRow]:
        """Instance rows selected by UIDs, in study/series/instance-number order."""
        with self.reads.connect() as conn:
            return idx.instance_rows_by_uid(conn, study_uid, series_uid, sop_uid)

    def open_instance(self, row: InstanceRow) -> BinaryIO:
        """The stored Part 10 file of an instance, as a binary stream."""
        return self.blobs.open(row.blob_key)

    def read_instance(self, row: InstanceRow) -> bytes:
        with self.open_instance(row) as fh:
            return fh.read()

    def local_path(self, row: InstanceRow) -> str:
        """A local file holding the instance, for libraries that need a path."""
        return self.blobs.local_path(row.blob_key)

    # ------------------------------------------------------ pixels, bulk data
    # The doors ask for frames, renderings, bulk data or "this instance in syntax X";
    # how the blob is read (only header and frames when ingest located the pixel
    # data, whole otherwise) is decided here.  The pixel work is isthmus.render's.
    @contextmanager
    def pixel_data(self, row: InstanceRow) -> Iterator[PixelData]:
        """The instance's pixel data (render.pixel_data.PixelData), reading only what is
        used: with the pixel offset recorded at ingest, the header and then the frames
        asked for (a multi-frame instance is never read whole); without it (deflated
        files), the whole file."""
        from isthmus.render.pixel_data import HeaderCache, file_reader, open_part10

        if row.pixel_offset is None:
            yield open_part10(self.read_instance(row))
            return
        if self._pixel_headers is None:
            self._pixel_headers = HeaderCache()
        with self.open_instance(row) as fh:
            yield self._pixel_headers.open_at(row.blob_key, file_reader(fh), row.pixel_offset)

    def frames(
        self, row: InstanceRow, numbers: list[int], transfer_syntax: str | None = None
    ) -> list[Frame]:
        """Frames `numbers` (1-based) as stored, or in `transfer_syntax` (PS3.18
        10.4.1.1.5); raises render's FrameNotFound, NoPixelData, DecodeError,
        TranscodeError."""
        from isthmus.render.frames import frames_of

        with self.pixel_data(row) as pixels:
            return frames_of(pixels, numbers, transfer_syntax)

    def render(self, row: InstanceRow, frame: int | None, media_type: str, **options: Any) -> bytes:
        """One frame (or, for GIF, every frame) rendered to a consumer image (PS3.18
        10.4.1.1.3, 8.3.5: window, viewport, quality, annotation…); raises render's
        errors."""
        from isthmus.render.image import render_pixels

        with self.pixel_data(row) as pixels:
            return render_pixels(pixels, frame=frame, media_type=media_type, **options)

    def read_as(self, row: InstanceRow, transfer_syntax: str) -> bytes:
        """The instance as a Part 10 file in `transfer_syntax`: the stored bytes when
        it is stored so, transcoded by isthmus.render otherwise (raises TranscodeError)."""
        data = self.read_instance(row)
        if transfer_syntax == row.transfer_syntax_uid:
            return data
        from isthmus.render.transcode import transcode

        return transcode(data, transfer_syntax)

    def dataset_for(self, row: InstanceRow, accepted: Collection[str]) -> tuple[str, memoryview]:
        """(transfer syntax, dataset bytes) to send the instance in, for a receiver that
        accepted `accepted` (a C-STORE sub-operation, PS3.4 C.4.2.3): as stored when the
        stored syntax was accepted, else transcoded to an accepted one, uncompressed
        first (PS3.5 10: every receiver takes those); ValueError when none is."""
        target = row.transfer_syntax_uid
        if target not in accepted:
            target = next(
                (ts for ts in (*uids.PREFERRED_UNCOMPRESSED, *accepted) if ts in accepted), ""
            )
            if not target:
                raise ValueError("the receiver accepted no transfer syntax for this SOP class")
        data = self.read_as(row, target)
        return target, memoryview(data)[part10.dataset_offset(data) :]

    def bulk_data(self, row: InstanceRow, tag: int) -> BulkData:
        """The value a BulkDataURI names (PS3.18 10.4.1.1.4), to read by byte range and
        close.  Raises NoBulkData when the instance has no binary value there, KeyError
        when its blob is missing; pixel data that is not one byte range
        (`pixel_data_as_frames`) is for `frames`."""
        return open_bulk_data(row, tag, self.open_instance(row))

    @staticmethod
    def pixel_data_as_frames(row: InstanceRow, tag: int) -> bool:
        """True when the bulk data at `tag` is pixel data to answer frame by frame."""
        return pixel_data_as_frames(row, tag)

    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> Iterator[str]:
        """Stored DICOM JSON text of each selected instance (never opens a file)."""
        with self.reads.connect() as conn:
            yield from idx.metadata_texts(conn, study_uid, series_uid, sop_uid)

    # ---------------------------------------------------------------- delete
    def delete(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> int:
        """Delete instances (and parents left empty); returns how many instances."""

        def job(conn: Connection) -> list[str]:
            rows = idx.instance_rows(conn, idx.uid_filter(study_uid, series_uid, sop_uid))
            if not rows:
                return []
            uids = [r.sop_instance_uid for r in rows]
            for start in range(0, len(uids), 500):
                conn.execute(
                    idx.instance.delete().where(
                        idx.instance.c.sop_instance_uid.in_(uids[start : start + 500])
                    )
                )
            self.parents_changed(conn)
            return [r.blob_key for r in rows]

        keys = self.writer.run(job)
        for key in keys:
            self.blobs.delete(key)
        return len(keys)

    # ---------------------------------------------------- de-identification
    def deidentifier(
        self, project: str, options: DeidentificationOptions | None = None
    ) -> Deidentifier:
        """The project's de-identifier (PS3.15 Annex E, isthmus.deid): its pseudonyms
        are keyed with the project's key, kept in the index (archive/deidentify.py)."""
        return Deidentifier(project_key(self.writer.run, project), options)

    def deidentify(
        self,
        datasets: Iterable[Dataset],
        project: str,
        options: DeidentificationOptions | None = None,
        excluded: Callable[[Dataset, Excluded], None] | None = None,
    ) -> Iterator[Dataset]:
        """For exports: data sets in, de-identified data
        sets out; an instance that cannot be de-identified (burned-in annotation without
        a pixel rule) is left out and handed to `excluded`."""
        return self.deidentifier(project, options).stream(datasets, excluded)

    def deidentify_studies(
        self,
        study_uids: Sequence[str],
        project: str,
        options: DeidentificationOptions | None = None,
        **who: Any,
    ) -> DeidentifiedStudies:
        """De-identify stored studies into new studies; the originals stay as they are.
        `who` (``user``, ``address``, ``local``) is the caller the audit trail names."""
        return deidentify_studies(
            self, study_uids, project, options or DeidentificationOptions(), who
        )

    # ----------------------------------------------------------- consistency
    def check(self, repair: bool = True, grace: float | None = None) -> dict[str, int]:
        """Find (and repair) what a crash can leave: partial blobs, orphan blobs, rows
        whose blob is missing.  Safe to run at start-up, also while other processes
        share the archive (docs/scaling.md): what another process may be writing at
        this moment - a temporary file, a blob whose row is not committed yet, a row
        just stored - is left alone until it is `grace` seconds old (default: none on
        SQLite or when no other process has the archive open, `SHARED_GRACE`
        otherwise), and each repair is checked again against the index just before
        it is made."""
        if grace is None:
            grace = SHARED_GRACE if self.shared() else 0.0
        found = survey(self, grace)
        if repair:
            found.repair(self)
        return found.report(repaired=repair)

    def shared(self) -> bool:
        """Do other processes have this archive open now (or can this one not tell)?"""
        others = getattr(self.events, "others", None)  # buses that cross processes
        return others is not None and others() != 0

    def usage(self) -> dict[str, Any]:
        """Storage in use: counts per level, bytes stored (from the index) and, for a
        blob store on a local file system, its size and free space."""
        with self.reads.connect() as conn:
            stored = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(idx.instance.c.size), 0))
            ).scalar_one()
        out: dict[str, Any] = {"counts": self.counts(), "bytes": int(stored)}
        root = getattr(self.blobs, "root", None)
        if root is not None:
            import shutil

            disk = shutil.disk_usage(root)
            out["filesystem"] = {"total": disk.total, "used": disk.used, "free": disk.free}
        return out

    def verify(self, references: Sequence[tuple[str, str]]) -> dict[str, Integrity]:
        """Is each (SOP Class UID, SOP Instance UID) durably stored and intact?  For Storage
        Commitment (PS3.4 J.3.2: success means the SCP keeps the instance).  An instance is
        intact when its row is committed (written after the blob's fsync settled, see
        `store`), of that SOP class, and its blob is present with the size recorded when it
        was stored (what `check` tests at start-up).  Keyed by SOP Instance UID."""
        uids = [uid for _cls, uid in references]
        rows: dict[str, tuple[str, str, int]] = {}
        i = idx.instance.c
        with self.reads.connect() as conn:
            for start in range(0, len(uids), 500):
                chosen = uids[start : start + 500]
                query = sa.select(i.sop_instance_uid, i.sop_class_uid, i.blob_key, i.size)
                for uid, sop_class, key, size in conn.execute(
                    query.where(i.sop_instance_uid.in_(chosen))
                ):
                    rows[uid] = (sop_class, key, size)
        return {uid: self._integrity(sop_class, rows.get(uid)) for sop_class, uid in references}

    def _integrity(self, sop_class: str, row: tuple[str, str, int] | None) -> Integrity:
        if row is None:
            return Integrity.NO_SUCH_INSTANCE
        stored_class, key, size = row
        if stored_class != sop_class:
            return Integrity.CLASS_INSTANCE_CONFLICT
        try:
            if self.blobs.size(key) != size:
                return Integrity.DAMAGED
        except (KeyError, OSError):
            return Integrity.DAMAGED
        return Integrity.INTACT

    def counts(self) -> dict[str, int]:
        """Patients, studies, series and instances held (one statement: /health asks)."""
        with self.reads.connect() as conn:
            row = conn.execute(_COUNTS).one()
        return {name.lower(): int(n) for name, n in zip(idx.TABLES, row, strict=True)}


# SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study), …
_COUNTS = sa.select(
    *(sa.select(sa.func.count()).select_from(t).scalar_subquery() for t in idx.TABLES.values())
)


@dataclass
class Staged:
    """An instance written and synced by `Archive.stage`, not yet in the index."""

    result: StoreResult
    key: str
    record: InstanceRecord
    modality: str | None
    source_aet: str | None
    staged_at: float = field(default_factory=time.monotonic)  # when its blob was synced


def _modality(header: part10.Header) -> str | None:
    value = header.json.get("00080060", {}).get("Value", [None])[0]
    return value if isinstance(value, str) else None


class _Refused(Exception):
    """A store step's refusal: the outcome and why, in words."""

    def __init__(self, outcome: StoreOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


def _parse(
    data: bytes | memoryview, transfer_syntax: str | None, source_aet: str | None
) -> part10.Header:
    """The header of a Part 10 file, or of a bare dataset in `transfer_syntax`; File Meta
    Information elements the data set held are dropped from it, with a warning (the
    sender's fault, worth its administrator's knowing; part10._drop_file_meta says why)."""
    if transfer_syntax is None:
        ts, dataset_bytes = part10.split_transfer_syntax(data)
        transfer_syntax = ts or part10.guess_transfer_syntax(dataset_bytes)
    else:
        dataset_bytes = memoryview(data)
    header = part10.read_header(dataset_bytes, transfer_syntax)
    if header.discarded:
        log.warning(
            "store %s from %s: File Meta Information %s in the data set dropped "
            "(PS3.10 7.1: group 0002 is a file's meta only)",
            header.uid("SOPInstanceUID"),
            (source_aet or "").strip() or "?",
            " ".join(f"({tag >> 16:04X},{tag & 0xFFFF:04X})" for tag in header.discarded),
        )
    return header


def _invalid_result(exc: InvalidDicom) -> StoreResult:
    """A refusal at parsing, with the UIDs read before it (PS3.18 Annex I wants them)."""
    return StoreResult(
        _invalid_outcome(exc),
        sop_instance_uid=exc.sop_instance_uid,
        sop_class_uid=exc.sop_class_uid,
        reason=str(exc),
    )


def _invalid_outcome(exc: InvalidDicom) -> StoreOutcome:
    if isinstance(exc, part10.UnknownTransferSyntax):
        return StoreOutcome.UNKNOWN_TRANSFER_SYNTAX
    return StoreOutcome.INVALID


def _result_of(header: part10.Header) -> StoreResult:
    """The result of a store about to be written: stored, with the warning of what it
    changed of what was sent.  Its File Meta Information elements left out of the data
    set are Elements Discarded (PS3.4 B.2.3, 0xB006; PS3.18 Table I.2-1); the stored
    file holds all else as it was sent."""
    result = StoreResult(
        StoreOutcome.STORED,
        header.uid("SOPInstanceUID"),
        header.uid("SOPClassUID"),
        header.uid("StudyInstanceUID"),
        header.uid("SeriesInstanceUID"),
        header.transfer_syntax,
    )
    if header.discarded:
        result.warning = StoreWarning.ELEMENTS_DISCARDED
        result.discarded = header.discarded
        result.reason = "group 0002 in the data set discarded: " + " ".join(
            f"({tag >> 16:04X},{tag & 0xFFFF:04X})" for tag in header.discarded
        )
    return result


def _check(
    result: StoreResult, expected: tuple[str | None, str] | None, expected_study: str | None
) -> None:
    """Refuse what is not what the sender said it sends (PS3.4 B.2.3, PS3.18 10.5.1).

    The reason fits a C-STORE Error Comment (64 characters, PS3.7 C.4) and names no
    patient: it goes to the log as it is."""
    if expected:
        sop_class, sop_instance = expected
        for keyword, announced, found in (
            ("Class", sop_class, result.sop_class_uid),
            ("Instance", sop_instance, result.sop_instance_uid),
        ):
            if announced is not None and found != announced.strip():
                raise _Refused(
                    StoreOutcome.DATASET_MISMATCH,
                    f"data set's SOP {keyword} UID is not the Affected SOP {keyword} UID",
                )
    if expected_study is not None and result.study_instance_uid != expected_study:
        raise _Refused(
            StoreOutcome.STUDY_MISMATCH,
            f"belongs to study {result.study_instance_uid}, not {expected_study}",
        )


def _write_failed(result: StoreResult, exc: OSError) -> _Refused:
    """A blob that cannot be written or synced: out of resources when the disk is full
    or the blob store cannot be reached (transient: the sender may try again later)."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT) or isinstance(exc, BlobStoreUnavailable)
    log.error("store %s: blob write failed: %s", result.sop_instance_uid, exc)
    return _Refused(
        StoreOutcome.OUT_OF_RESOURCES if full else StoreOutcome.PROCESSING_FAILURE,
        f"cannot write: {exc.strerror}",
    )


def _blob_key(study_uid: str, sop_instance_uid: str) -> str:
    """Opaque key: one folder per study (few directory creations and fsyncs on ingest),
    a random suffix so a replaced instance never overwrites the bytes the index points to."""
    study = hashlib.sha256(study_uid.encode()).hexdigest()
    instance = hashlib.sha256(sop_instance_uid.encode()).hexdigest()
    return f"{study[:2]}/{study[:20]}/{instance[:24]}-{secrets.token_hex(4)}.dcm"


class _Parents:
    """The rows of one parent level (patient, study, series): found by the columns that
    identify one, inserted when missing (by another process at the same moment, too)."""

    def __init__(self, table: sa.Table, unique: tuple[str, ...]) -> None:
        self.table, self.unique = table, unique
        self._find = Prepared(
            sa.select(table.c.pk).where(*(table.c[c] == sa.bindparam(c) for c in unique))
        )
        self._insert = Prepared(
            functools.partial(idx.insert_ignore_statement, table=table), per_columns=True
        )

    def cache_key(self, values: dict[str, Any]) -> tuple[str, ...]:
        """The key of the row of `values` in the archive's cache of parent keys."""
        return (self.table.name, *[str(values[c]) for c in self.unique])

    def find(self, conn: Connection, values: dict[str, Any]) -> int | None:
        """The primary key of the row of `values`, or None if there is none."""
        found = self._find.first(conn, values)
        return None if found is None else int(found[0])

    def key(self, conn: Connection, values: dict[str, Any]) -> int:
        """The primary key of the row of `values`, inserted if there is none."""
        pk = self.find(conn, values)
        if pk is None:
            self._insert.first(conn, values)
            pk = self.find(conn, values)
            if pk is None:
                raise RuntimeError(f"no {self.table.name} row after its insert")
        return pk


_PATIENTS = _Parents(idx.patient, ("patient_id", "issuer_of_patient_id"))
_STUDIES = _Parents(idx.study, ("study_instance_uid",))
_SERIES = _Parents(idx.series, ("series_instance_uid",))


def _refresh_parents(
    conn: Connection, record: InstanceRecord, patient_pk: int, study_pk: int, series_pk: int
) -> bool:
    """Overwrite policy: the index columns of the parents follow the newest copy.
    Returns True when the series or study changed parent (old parents may be empty)."""
    st, s = idx.study.c, idx.series.c
    old_patient = conn.execute(sa.select(st.patient_pk).where(st.pk == study_pk)).scalar()
    old_study = conn.execute(sa.select(s.study_pk).where(s.pk == series_pk)).scalar()
    conn.execute(
        idx.patient.update().where(idx.patient.c.pk == patient_pk).values(**record.patient)
    )
    conn.execute(
        idx.study.update().where(st.pk == study_pk).values(**record.study, patient_pk=patient_pk)
    )
    conn.execute(
        idx.series.update().where(s.pk == series_pk).values(**record.series, study_pk=study_pk)
    )
    return old_patient != patient_pk or old_study != study_pk


def _delete_empty_parents(conn: Connection) -> None:
    i, s, st, p = idx.instance, idx.series, idx.study, idx.patient
    conn.execute(s.delete().where(~sa.exists().where(i.c.series_pk == s.c.pk)))
    conn.execute(st.delete().where(~sa.exists().where(s.c.study_pk == st.c.pk)))
    conn.execute(p.delete().where(~sa.exists().where(st.c.patient_pk == p.c.pk)))
