"""Upload by STOW-RS: chosen files and dropped files, a result per file, the list updated."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from isthmus.testing.generate import StudySpec, write_study


def new_study(folder: Path, name: str, pid: str, count: int = 2) -> list[Path]:
    return write_study(
        StudySpec(
            patient_name=name,
            patient_id=pid,
            accession=f"{pid}A",
            instances_per_series=count,
            rows=32,
            columns=32,
        ),
        folder,
    )


def test_chosen_files_are_stored_and_appear_in_the_list(
    page: Any, base_url: str, tmp_path: Path
) -> None:
    files = new_study(tmp_path / "up", "UPLOAD^CHOSEN", "UP001")
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM")
    page.goto(f"{base_url}?PatientID=UP001")
    page.wait_for_function(
        "document.querySelector('#list-status').textContent === 'No studies match.'"
    )
    page.click("#upload-open")
    page.set_input_files("#upload-files", [str(p) for p in files] + [str(junk)])
    page.wait_for_function(
        "document.querySelector('#upload-summary').textContent.startsWith('Done')"
    )
    assert (
        page.locator("#upload-summary").text_content() == "Done: 2 stored, 0 failed, 1 not DICOM."
    )
    results = dict(
        zip(
            page.locator("#upload-results tbody td:first-child").all_text_contents(),
            page.locator("#upload-results tbody td:last-child").all_text_contents(),
            strict=True,
        )
    )
    assert results[files[0].name] == "stored"
    assert results["notes.txt"].startswith("not a DICOM file")
    assert page.get_attribute("#upload-progress", "value") == page.get_attribute(
        "#upload-progress", "max"
    )
    page.click("#upload-close")
    page.wait_for_function("document.querySelectorAll('#studies tbody tr').length === 1")
    assert page.locator("#studies tbody tr td").first.text_content() == "UPLOAD, CHOSEN"


def test_dropped_files_are_uploaded(page: Any, base_url: str, tmp_path: Path) -> None:
    files = new_study(tmp_path / "drop", "UPLOAD^DROPPED", "UP002", count=1)
    payload = base64.b64encode(files[0].read_bytes()).decode()
    page.goto(f"{base_url}?PatientID=UP002")
    page.wait_for_function(
        "document.querySelector('#list-status').textContent === 'No studies match.'"
    )
    page.evaluate(
        """(b64) => {
      const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.dcm', { type: 'application/dicom' }));
      for (const type of ['dragenter', 'dragover', 'drop']) {
        document.body.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    }""",
        payload,
    )
    page.wait_for_function(
        "document.querySelector('#upload-summary').textContent.startsWith('Done')"
    )
    assert page.locator("#upload-results tbody td:last-child").all_text_contents() == ["stored"]
    assert page.locator("#drop-overlay").is_hidden()
    page.click("#upload-close")
    page.wait_for_function("document.querySelectorAll('#studies tbody tr').length === 1")


def test_a_chosen_folder_is_uploaded_with_its_subfolders(
    page: Any, base_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    new_study(folder / "a", "UPLOAD^FOLDER", "UP003", count=2)
    new_study(folder / "b" / "deeper", "UPLOAD^FOLDER", "UP003", count=1)
    page.goto(f"{base_url}?PatientID=UP003")
    page.wait_for_function(
        "document.querySelector('#list-status').textContent === 'No studies match.'"
    )
    page.click("#upload-open")
    page.set_input_files("#upload-folder", str(folder))
    page.wait_for_function(
        "document.querySelector('#upload-summary').textContent.startsWith('Done')"
    )
    assert (
        page.locator("#upload-summary").text_content() == "Done: 3 stored, 0 failed, 0 not DICOM."
    )
    paths = page.locator("#upload-results tbody td:first-child").all_text_contents()
    assert any(p.endswith("b/deeper/001_00001.dcm") for p in paths), paths
    page.click("#upload-close")
    page.wait_for_function("document.querySelectorAll('#studies tbody tr').length === 2")
