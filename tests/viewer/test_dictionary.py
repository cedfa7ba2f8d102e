"""The browser's one data dictionary (dicomnet/dictionary-data.js, read by dictionary.js)
is scripts/make_dictionary.py's output, and decodes to pydicom's tags, VRs and keywords."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "make_dictionary", ROOT / "scripts/make_dictionary.py"
)
assert spec and spec.loader
make_dictionary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_dictionary)

DUMP = """
import { describeTag, TAGS } from "./src/isthmus/viewer/dicomnet/dictionary.js";
const out = {};
for (const [keyword, tag] of Object.entries(TAGS)) {
  const hex = tag.toString(16).toUpperCase().padStart(8, "0");
  out[hex] = [describeTag(tag).vr, keyword];
}
console.log(JSON.stringify(out));
"""


def test_committed_file_is_the_generated_one() -> None:
    committed = make_dictionary.TARGET.read_text(encoding="utf-8")
    assert committed == make_dictionary.source(), "regenerate with scripts/make_dictionary.py"


@pytest.mark.skipif(shutil.which("node") is None, reason="no node")
def test_decodes_to_pydicom() -> None:
    run = subprocess.run(
        ["node", "--input-type=module", "-e", DUMP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    shipped = json.loads(run.stdout)
    expected = {}
    for group, element, vr, keyword in make_dictionary.entries():
        group = group.replace("xx", "00")
        expected[f"{group}{element}"] = [None if vr == "NO" else vr, keyword]
    assert shipped == expected
    assert shipped["00100010"] == ["PN", "PatientName"] and shipped["7FE00010"] == [
        "OW",
        "PixelData",
    ]
    assert shipped["60003000"] == ["OW", "OverlayData"]
