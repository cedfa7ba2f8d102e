"""`isthmus deidentify`: PS3.15 Annex E over files (into a folder) or over stored studies
(into new studies of the archive); the pseudonym key of the project comes from the
archive's index either way, so files and stored studies of a project agree.

Output files are named by their new UIDs (``OUT/<Study UID>/<SOP Instance UID>.dcm``):
the input's own file and folder names often carry a patient's name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.errors import InvalidDicomError

from isthmus.config import Settings
from isthmus.deid import (
    DeidentificationOptions,
    DeidentificationOptionsError,
    Deidentifier,
    Excluded,
    PixelRuleError,
    encode,
)

if TYPE_CHECKING:
    from isthmus.archive import Archive


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (recursive)")
    p.add_argument("--project", required=True, help="the project whose pseudonyms to use")
    p.add_argument("--out", type=Path, help="folder for the de-identified files")
    p.add_argument(
        "--study", action="append", default=[], metavar="UID", help="a stored study (repeatable)"
    )
    p.add_argument(
        "--dates",
        choices=["remove", "full", "modified"],
        default="remove",
        help="Retain Longitudinal Temporal Information: full dates, or modified (shifted)",
    )
    for flag in (
        "retain-patient-characteristics",
        "retain-device-identity",
        "retain-institution-identity",
        "retain-uids",
        "clean-descriptors",
        "retain-safe-private",
    ):
        p.add_argument(
            f"--{flag}", action="store_true", help=f"the {flag.replace('-', ' ')} option"
        )
    p.add_argument("--pixel-rules", type=Path, help="JSON file: rules for Clean Pixel Data")
    p.add_argument("--index-url", help="sqlite:///path or postgresql://user@host/db")


def options_of(args: argparse.Namespace) -> DeidentificationOptions:
    raw: dict[str, object] = {"dates": args.dates}
    for name in (
        "retain_patient_characteristics",
        "retain_device_identity",
        "retain_institution_identity",
        "retain_uids",
        "clean_descriptors",
        "retain_safe_private",
    ):
        raw[name] = bool(getattr(args, name))
    if args.pixel_rules:
        raw["pixel_rules"] = json.loads(args.pixel_rules.read_text(encoding="utf-8"))
    return DeidentificationOptions.from_mapping(raw)


def run(args: argparse.Namespace, settings: Settings, files: Iterable[Path]) -> int:
    """The command (`files`: those under args.paths): 0 when everything was
    de-identified, 1 when anything was not, 2 for a usage error."""
    from isthmus.archive import Archive

    if bool(args.paths) == bool(args.study) or (args.paths and not args.out):
        print("isthmus deidentify: give PATH… --out FOLDER, or --study UID", file=sys.stderr)
        return 2
    try:
        options = options_of(args)
    except (DeidentificationOptionsError, PixelRuleError, ValueError, OSError) as exc:
        print(f"isthmus deidentify: {exc}", file=sys.stderr)
        return 2
    from isthmus.audit import AuditTrail

    archive = Archive.from_settings(settings)
    # New instances in the archive are audited, as `isthmus import`'s are.
    trail = AuditTrail.from_settings(archive, settings) if args.study else None
    try:
        deid = archive.deidentifier(args.project, options)
        if args.study:
            return _studies(archive, args.study, args.project, options, settings.aet)
        return _files(deid, files, args.out)
    except DeidentificationOptionsError as exc:
        print(f"isthmus deidentify: {exc}", file=sys.stderr)
        return 2
    finally:
        if trail is not None:
            trail.close()
        archive.close()


def _files(deid: Deidentifier, files: Iterable[Path], out: Path) -> int:
    done = skipped = 0
    for path in files:
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError) as exc:
            skipped += 1
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # pydicom raises many kinds for a damaged file
            skipped += 1
            print(f"skipped {path}: unreadable ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        try:
            data = encode(deid.dataset(ds, in_place=True))
        except Excluded as exc:
            skipped += 1
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        except (ValueError, TypeError, OverflowError) as exc:  # a value pydicom cannot write
            skipped += 1
            print(f"skipped {path}: cannot be written ({exc})", file=sys.stderr)
            continue
        target = out / ds.StudyInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        done += 1
    print(f"de-identified {done} file(s) into {out}, {skipped} skipped")
    return 0 if not skipped else 1


def _studies(
    archive: Archive,
    studies: list[str],
    project: str,
    options: DeidentificationOptions,
    local: str,
) -> int:
    from isthmus.archive.activity import os_user

    result = archive.deidentify_studies(studies, project, options, user=os_user(), local=local)
    for source, new in result.studies.items():
        print(f"{source} -> {new}")
    for uid in result.missing:
        print(f"not in the archive: study {uid}", file=sys.stderr)
    for uid, reason in result.excluded + result.failed:
        print(f"skipped instance {uid}: {reason}", file=sys.stderr)
    print(
        f"de-identified {len(result.studies)} study(ies): {result.stored} instance(s) stored, "
        f"{result.duplicates} already there, {len(result.excluded)} excluded, "
        f"{len(result.failed)} failed"
    )
    return 0 if not (result.missing or result.excluded or result.failed) else 1
