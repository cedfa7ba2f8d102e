"""A full disk refuses the instance that does not fit and loses nothing else.

The blob store sits on a 1 MiB tmpfs mounted in a private mount namespace
(`unshare -m`, root only), so the disk really fills up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from isthmus.archive import Archive
    from isthmus.testing.generate import StudySpec, write_study
    work = Path(sys.argv[1])
    paths = write_study(StudySpec(rows=256, columns=256, instances_per_series=8), work / "in")
    archive = Archive(f"sqlite:///{work / 'index.sqlite'}", f"file://{work / 'small'}")
    results = [archive.store(p.read_bytes()) for p in paths]
    report = {
        "statuses": [r.status for r in results],
        "failures": [r.failure for r in results],
        "check": archive.check(repair=False),
        "readable": sum(1 for row in archive.instances() if archive.read_instance(row)),
        "files": sorted(p.name for p in (work / "small").rglob("*") if p.is_file()),
    }
    archive.close()
    print(json.dumps(report))
""")


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare to mount a small tmpfs",
)
def test_full_disk_fails_with_out_of_resources_and_keeps_what_was_stored(tmp_path: Path) -> None:
    (tmp_path / "small").mkdir()
    command = (
        f"mount -t tmpfs -o size=1m isthmus-full {tmp_path / 'small'} && "
        f'exec {sys.executable} -c "$SCRIPT" {tmp_path}'
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command],
        env={**os.environ, "SCRIPT": SCRIPT},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    stored = report["statuses"].count("stored")
    # 8 instances of ~128 KiB do not fit in 1 MiB: the first ones do, the rest fail cleanly.
    assert 0 < stored < 8
    assert set(report["failures"][stored:]) == {"resources"}
    assert report["statuses"][stored:] == ["failed"] * (8 - stored)
    assert report["readable"] == stored
    assert report["check"] == {"partial": 0, "orphans": 0, "missing": 0, "instances": stored}
    assert not any(name.endswith(".partial") for name in report["files"])
