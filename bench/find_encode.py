"""What encoding a C-FIND match costs: pydicom's path against the direct encoder.

    PYTHONPATH=src:. .venv/bin/python -m bench.find_encode [--repeat 5]

Stores the first instance of each series of the benchmark's 200 studies (bench/data.py,
generated when missing) in a scratch archive, runs the `find` benchmark's query
(PatientName=SMITH*, its nine return keys: 40 matches) and encodes every match as a
pending response's identifier both ways, in each transfer syntax the Q/R services take.
Prints microseconds per match (best of `--repeat` rounds) and checks that the bytes agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from bench.data import load
from bench.dimse import STUDY_RETURN_KEYS
from isthmus.archive import Archive, Query
from isthmus.dicom import uids
from isthmus.dimse import messages as msg
from isthmus.dimse.identifiers import identifier_keys, result_dataset, result_identifier

SYNTAXES = {
    "implicit LE": uids.IMPLICIT_VR_LITTLE_ENDIAN,
    "explicit LE": uids.EXPLICIT_VR_LITTLE_ENDIAN,
    "explicit BE": uids.EXPLICIT_VR_BIG_ENDIAN,
    "deflated": uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
}
ROUNDS = 50


def matches(work: Path) -> list[dict[str, Any]]:
    """The find benchmark's matches, from one instance per series of its studies."""
    archive = Archive(f"sqlite:///{work / 'index.sqlite'}", f"file://{work / 'blobs'}")
    first: dict[str, Path] = {}
    small = load("small", Path(__file__).resolve().parent / "out" / "data")
    for path in small.files():
        first.setdefault(f"{path.parent.name}/{path.name.split('_')[0]}", path)
    for path in first.values():
        archive.store(path.read_bytes())
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_RETURN_KEYS:
        setattr(identifier, keyword, "SMITH*" if keyword == "PatientName" else "")
    query = Query(level="STUDY", keys=identifier_keys(identifier), root="STUDY", hierarchical=True)
    return archive.find(query).matches


def per_match(encode: Callable[[dict[str, Any]], bytes], found: list[dict[str, Any]]) -> float:
    """Microseconds per match, `ROUNDS` passes over all of them."""
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for match in found:
            encode(match)
    return (time.perf_counter() - started) / (ROUNDS * len(found)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        found = matches(Path(work))
    print(f"{len(found)} matches, {ROUNDS} passes, best of {args.repeat}")
    for name, ts in SYNTAXES.items():

        def old(m: dict[str, Any], ts: str = ts) -> bytes:
            return msg.encode_identifier(result_dataset(m, "STUDY", "ISTHMUS"), ts)

        def new(m: dict[str, Any], ts: str = ts) -> bytes:
            return result_identifier(m, "STUDY", "ISTHMUS", ts)

        if any(old(m) != new(m) for m in found):
            raise SystemExit(f"{name}: the encodings differ")
        before = min(per_match(old, found) for _ in range(args.repeat))
        after = min(per_match(new, found) for _ in range(args.repeat))
        print(f"{name:12} pydicom {before:6.1f} µs  direct {after:5.1f} µs  ×{before / after:.1f}")


if __name__ == "__main__":
    main()
