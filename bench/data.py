"""The benchmark data, generated with pydicom and cached under bench/out/data.

- `ct`: one CT study, one series of 271 instances of 512×512 16-bit (about 514 KB each);
- `small`: 10,000 instances of 64×64 over 200 studies of 50 (50 patients × 4 studies);
- `qido`: 10,000 one-instance studies whose patient names make prefix queries selective
  (`SMITH^000` … `SMITH^999`, then `JONES^000` …).

A dataset is regenerated when its folder lacks a manifest of the current version.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from isthmus.testing.generate import StudySpec, patients, study, write_study

VERSION = 1
QIDO_FAMILIES = [
    "SMITH",
    "JONES",
    "TAYLOR",
    "BROWN",
    "WILSON",
    "EVANS",
    "THOMAS",
    "ROBERTS",
    "WALKER",
    "WRIGHT",
]


@dataclass
class DataSet:
    """Files on disk, grouped in folders (one study, or one batch, per folder)."""

    name: str
    root: Path
    folders: list[Path]
    count: int
    size_bytes: int
    study_uids: list[str]

    def files(self, folder: Path | None = None) -> list[Path]:
        folders = [folder] if folder else self.folders
        return [p for f in folders for p in sorted(f.glob("*.dcm"))]


def load(name: str, data_dir: Path) -> DataSet:
    """The dataset `name`, generated first if missing or stale."""
    root = data_dir / name
    manifest = root / "manifest.json"
    if manifest.exists():
        doc = json.loads(manifest.read_text())
        if doc.get("version") == VERSION:
            return _from_manifest(name, root, doc)
    if root.exists():
        shutil.rmtree(root)
    started = time.perf_counter()
    print(f"generating data set {name!r} in {root} …", flush=True)
    study_uids = GENERATORS[name](root)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    files = [p for f in folders for p in f.glob("*.dcm")]
    doc = {
        "version": VERSION,
        "folders": [f.name for f in folders],
        "count": len(files),
        "size_bytes": sum(p.stat().st_size for p in files),
        "study_uids": study_uids,
    }
    manifest.write_text(json.dumps(doc))
    print(f"  {len(files)} files in {time.perf_counter() - started:.1f} s", flush=True)
    return _from_manifest(name, root, doc)


def _from_manifest(name: str, root: Path, doc: dict) -> DataSet:
    return DataSet(
        name,
        root,
        [root / f for f in doc["folders"]],
        doc["count"],
        doc["size_bytes"],
        doc["study_uids"],
    )


def _ct(root: Path) -> list[str]:
    spec = StudySpec(
        patient_name="BENCH^CT",
        patient_id="BENCHCT",
        accession="BENCHCT1",
        description="CT BENCH",
        rows=512,
        columns=512,
        instances_per_series=271,
    )
    paths = write_study(spec, root / "study")
    from pydicom import dcmread

    return [str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)]


def _small(root: Path) -> list[str]:
    uids = []
    specs = patients(50, studies_each=4, instances_per_series=50, rows=64, columns=64)
    for n, spec in enumerate(specs):
        paths = write_study(spec, root / f"study{n:03d}")
        from pydicom import dcmread

        uids.append(str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID))
    return uids


def qido_name(n: int) -> str:
    """Patient name of study `n` of the `qido` set: 1,000 per family name."""
    return f"{QIDO_FAMILIES[n // 1000]}^{n % 1000:03d}"


def _qido(root: Path) -> list[str]:
    uids = []
    for n in range(10_000):
        spec = StudySpec(
            patient_name=qido_name(n),
            patient_id=f"Q{n:05d}",
            accession=f"QA{n:05d}",
            description=f"QIDO {n}",
            study_date=f"2020{1 + n % 12:02d}{1 + n % 28:02d}",
            instances_per_series=1,
            rows=16,
            columns=16,
        )
        folder = root / f"batch{n // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for ds in study(spec):
            ds.save_as(folder / f"{n:05d}.dcm", enforce_file_format=True)
            uids.append(str(ds.StudyInstanceUID))
    return uids


GENERATORS = {"ct": _ct, "small": _small, "qido": _qido}
