"""`isthmus worklist add FILE` and `isthmus worklist list`: worklist entries from a file.

A RIS export or an administrator's file of scheduled procedures becomes SCHEDULED UPS
work items, which Modality Worklist C-FIND, UPS-RS and the viewer then show.  The file
is CSV (a header row naming the fields), JSON (a list of objects, or
``{"entries": [...]}``) or TOML (``[[entry]]`` tables), chosen by its suffix.  Fields
(`isthmus.archive.workitem_entry.FIELDS`; only ``start`` and ``label`` or ``procedure``
are required)::

    patient_id,patient_name,birth_date,sex,accession,requested_procedure_id,procedure,
    modality,station_aet,start,label,priority,performer,study_uid

Every entry is checked before any is created: a file with a bad entry creates nothing
and says which line is wrong.  Entries go into the local archive (``--data``,
``--index-url``), or with ``--url`` to a running Isthmus over UPS-RS (then the server's
subscribers hear of them at once).
"""

from __future__ import annotations

import csv
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from isthmus.archive import EntryError, scheduled_workitem

WORKITEMS_LIST_KEYS = (
    ("00404005", "start"),
    ("00404026", "modality"),
    ("00404025", "station"),
    ("00100020", "patient"),
    ("0040A370", "accession"),
    ("00741204", "label"),
    ("00741000", "state"),
)


class WorklistFileError(ValueError):
    """A file that cannot be read as worklist entries; the message names the entry."""


def read_entries(path: Path) -> list[dict[str, str]]:
    """The entries of a CSV, JSON or TOML file, as field → text."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorklistFileError(f"{path}: {exc}") from None
    try:
        if suffix == ".csv":
            rows: Any = list(csv.DictReader(text.splitlines()))
        elif suffix == ".json":
            rows = json.loads(text)
            rows = rows.get("entries", []) if isinstance(rows, dict) else rows
        elif suffix == ".toml":
            rows = tomllib.loads(text).get("entry", [])
        else:
            raise WorklistFileError(f"{path}: use a .csv, .json or .toml file")
    except (ValueError, csv.Error) as exc:
        raise WorklistFileError(f"{path}: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise WorklistFileError(f"{path}: expected a list of entries")
    return [{str(k): "" if v is None else str(v) for k, v in r.items()} for r in rows]


def datasets(path: Path) -> list[dict[str, Any]]:
    """Every entry as a work item dataset; WorklistFileError on the first bad one."""
    out = []
    for number, entry in enumerate(read_entries(path), start=1):
        try:
            out.append(scheduled_workitem(entry))
        except EntryError as exc:
            raise WorklistFileError(f"{path}: entry {number}: {exc}") from None
    if not out:
        raise WorklistFileError(f"{path}: no entries")
    return out


def add(path: Path, settings: Any, url: str | None = None) -> int:
    items = datasets(path)
    uids = _add_over_http(url, items) if url else _add_locally(settings, items)
    for uid in uids:
        print(uid)
    print(f"created {len(uids)} work item(s)", file=sys.stderr)
    return 0


def _add_locally(settings: Any, items: list[dict[str, Any]]) -> list[str]:
    """Create the work items in the archive's own files; each creation, or the refusal
    that stops the run, is a Procedure Record (PS3.15 A.5.3.15) in the audit trail, as
    through UPS-RS, with the operator (the OS user) as requestor."""
    from isthmus.archive import UPS_PUSH_SOP_CLASS, Archive, WorkItemError
    from isthmus.archive.activity import MINOR_FAILURE, SUCCESS, os_user
    from isthmus.audit import AuditTrail

    archive = Archive.from_settings(settings)
    trail = AuditTrail.from_settings(archive, settings)

    def audit(uid: str, step: dict[str, Any], outcome: int, why: str | None = None) -> None:
        archive.activity.procedure_record(
            "C",
            UPS_PUSH_SOP_CLASS,
            uid,
            step,
            operation="worklist add",
            outcome=outcome,
            description=why,
            door="cli",
            user=os_user(),
            address=None,
            local=settings.aet,
        )

    try:
        out = []
        for ds in items:
            try:
                created = archive.workitems.create(ds)
            except WorkItemError as exc:
                audit("", ds, MINOR_FAILURE, str(exc))
                raise WorklistFileError(f"refused: {exc}") from None
            audit(created.uid, created.dataset, SUCCESS)
            out.append(created.uid)
        return out
    finally:
        trail.close()
        archive.close()


def _add_over_http(url: str, items: list[dict[str, Any]]) -> list[str]:
    import httpx

    out = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=30) as client:
        for ds in items:
            r = client.post(
                "/workitems",
                content=json.dumps(ds),
                headers={"Content-Type": "application/dicom+json"},
            )
            if r.status_code != 201:
                raise WorklistFileError(f"{url} refused an entry: {r.status_code} {r.text[:200]}")
            out.append(r.headers["location"].rsplit("/", 1)[-1])
    return out


def list_items(settings: Any, date: str | None, modality: str | None, as_json: bool) -> int:
    """Print the work items (one per line, or DICOM JSON), by scheduled start."""
    from isthmus.archive import Archive

    params: dict[str, str] = {}
    if date:
        params["ScheduledProcedureStepStartDateTime"] = date
    if modality:
        params["ScheduledStationClassCodeSequence.CodeValue"] = modality.upper()
    archive = Archive.from_settings(settings)
    try:
        found = archive.workitems.search(params)
    finally:
        archive.close()
    if as_json:
        print(json.dumps(found, indent=1))
        return 0
    print("\t".join(name for _, name in WORKITEMS_LIST_KEYS) + "\tuid")
    for ds in found:
        print(
            "\t".join(_cell(ds, tag) for tag, _ in WORKITEMS_LIST_KEYS)
            + "\t"
            + _cell(ds, "00080018")
        )
    return 0


def _cell(ds: dict[str, Any], tag: str) -> str:
    values = (ds.get(tag) or {}).get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):
        if "Alphabetic" in first:
            return str(first["Alphabetic"])
        for key in ("00080100", "00080050"):  # CodeValue, AccessionNumber
            inner = (first.get(key) or {}).get("Value") or []
            if inner:
                return str(inner[0])
        return ""
    return str(first)
