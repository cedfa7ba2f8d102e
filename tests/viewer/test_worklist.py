"""The worklist page: work items by scheduled date and modality, each with its state."""

from __future__ import annotations

from typing import Any

from isthmus.archive import IN_PROGRESS, scheduled_workitem

TUID = "1.2.826.0.1.3680043.10.77.1"


def add(node: Any, **entry: str) -> str:
    return str(node.archive.workitems.create(scheduled_workitem(entry)).uid)


def rows(page: Any) -> list[list[str]]:
    return [r.locator("td").all_text_contents() for r in page.locator("#worklist tbody tr").all()]


def test_worklist_lists_items_by_date_and_modality_with_their_state(
    page: Any, base_url: str, viewer_node: Any
) -> None:
    node = viewer_node[0]
    add(
        node,
        patient_name="LATE^MR",
        patient_id="W2",
        modality="MR",
        start="202603020800",
        label="MR knee",
    )
    claimed = add(
        node,
        patient_name="EARLY^CT",
        patient_id="W1",
        modality="CT",
        station_aet="CT01",
        accession="ACC-W1",
        start="202603010930",
        label="CT head",
    )
    add(
        node,
        patient_name="SAME^DAY",
        patient_id="W3",
        modality="US",
        start="202603010930",
        label="US",
    )
    node.archive.workitems.change_state(claimed, IN_PROGRESS, TUID)
    page.goto(f"{base_url}?view=worklist")
    page.wait_for_function("document.querySelectorAll('#worklist tbody tr').length >= 3")
    table = [r for r in rows(page) if r[5] in ("W1", "W2", "W3")]
    assert [r[5] for r in table] == ["W1", "W3", "W2"]  # date and time, then modality
    assert table[0] == [
        "2026-03-01",
        "09:30",
        "CT",
        "CT01",
        "EARLY, CT",
        "W1",
        "ACC-W1",
        "CT head",
        "IN PROGRESS",
    ]
    assert table[2][-1] == "SCHEDULED"
    page.select_option("#worklist-search select[name=modality]", "MR")
    page.wait_for_function("document.querySelectorAll('#worklist tbody tr').length === 1")
    assert rows(page)[0][5] == "W2" and "modality=MR" in page.url
    page.goto(f"{base_url}?view=worklist&date=20260301&state=IN%20PROGRESS")
    page.wait_for_function("document.querySelectorAll('#worklist tbody tr').length === 1")
    assert rows(page)[0][5] == "W1"
    assert page.locator("#worklist-status").text_content() == "1 work item"


def test_worklist_fits_a_phone_screen(phone: Any, base_url: str, viewer_node: Any) -> None:
    add(
        viewer_node[0],
        patient_name="PHONE^CASE",
        patient_id="W9",
        modality="CT",
        start="202603050800",
        label="CT",
    )
    phone.goto(f"{base_url}?view=worklist")
    phone.wait_for_function("document.querySelectorAll('#worklist tbody tr').length >= 1")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= phone.viewport_size["width"], f"page is {width}px wide"
    box = phone.locator("#worklist tbody tr", has_text="PHONE").locator(".state").bounding_box()
    assert box["x"] + box["width"] <= phone.viewport_size["width"]  # the state is on screen
