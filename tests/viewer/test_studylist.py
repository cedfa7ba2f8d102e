"""The study list: search narrows it, the URL carries the search, sorting and paging."""

from __future__ import annotations

from typing import Any

from .conftest import PAGING_STUDIES


def rows(page: Any) -> list[str]:
    return page.locator("#studies tbody tr td:first-child").all_text_contents()


def wait_rows(page: Any, count: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('#studies tbody tr').length === {count}")


def test_list_shows_studies_with_counts(page: Any, base_url: str, viewer_data: Any) -> None:
    page.goto(base_url)
    wait_rows(page, 25)
    assert page.locator("#list-status").text_content() == f"{viewer_data.studies} studies"
    row = page.locator("#studies tbody tr", has_text="PHANTOM, CHEST")
    cells = row.locator("td").all_text_contents()
    assert cells[1:] == [
        "PH001",
        "2024-03-01",
        "CT THORAX PHANTOM",
        "PHACC",
        "CT",
        "1",
        str(viewer_data.phantom_slices),
    ]


def test_typing_a_name_narrows_the_list_and_the_url(page: Any, base_url: str) -> None:
    page.goto(base_url)
    wait_rows(page, 25)
    page.fill("input[name=PatientName]", "SM")
    page.wait_for_function("document.querySelectorAll('#studies tbody tr').length < 5")
    names = rows(page)
    assert names and all(n.upper().startswith("SM") for n in names), names
    assert "PatientName=SM" in page.url


def test_shared_link_restores_the_search(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}?PatientID=PH001")
    wait_rows(page, 1)
    assert page.input_value("input[name=PatientID]") == "PH001"
    assert rows(page) == ["PHANTOM, CHEST"]


def test_date_range_and_modality_filter(page: Any, base_url: str) -> None:
    page.goto(base_url)
    wait_rows(page, 25)
    page.select_option("select[name=ModalitiesInStudy]", "CT")
    page.fill("input[name=from]", "2024-01-01")
    page.fill("input[name=to]", "2024-12-31")
    page.click("#search button[type=submit]")
    wait_rows(page, 1)
    assert rows(page) == ["PHANTOM, CHEST"]
    assert "StudyDate=20240101-20241231" in page.url and "ModalitiesInStudy=CT" in page.url
    page.go_back()
    page.wait_for_function("document.querySelectorAll('#studies tbody tr').length > 1")


def test_accession_number_search(page: Any, base_url: str) -> None:
    page.goto(base_url)
    wait_rows(page, 25)
    page.fill("input[name=AccessionNumber]", "PHACC")
    page.press("input[name=AccessionNumber]", "Enter")
    wait_rows(page, 1)


def test_column_header_sorts_both_ways(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}?PatientName=PAGE*")
    wait_rows(page, 25)
    header = page.locator("th[data-sort=PatientID]")
    header.locator("button").click()
    page.wait_for_function(
        "document.querySelector('th[data-sort=PatientID]').getAttribute('aria-sort') === 'ascending'"
    )
    ids = page.locator("#studies tbody tr td:nth-child(2)").all_text_contents()
    assert ids == sorted(ids) and ids[0] == "PG000"
    header.locator("button").click()
    page.wait_for_function(
        "document.querySelector('th[data-sort=PatientID]').getAttribute('aria-sort') === 'descending'"
    )
    ids = page.locator("#studies tbody tr td:nth-child(2)").all_text_contents()
    assert ids == sorted(ids, reverse=True)
    assert "sort=-PatientID" in page.url


def test_results_are_paged(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}?PatientName=PAGE*&sort=PatientID")
    wait_rows(page, 25)
    assert page.locator("#page-label").text_content() == "Page 1 of 2"
    page.click("#pager a[rel=next]")
    wait_rows(page, PAGING_STUDIES - 25)
    assert "page=2" in page.url
    assert page.locator("#studies tbody tr td:nth-child(2)").first.text_content() == "PG025"


def test_no_match_says_so(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}?PatientName=NOBODY")
    page.wait_for_function(
        "document.querySelector('#list-status').textContent === 'No studies match.'"
    )
    assert rows(page) == []


def test_keyboard_reaches_and_opens_a_study(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}?PatientID=PH001")
    wait_rows(page, 1)
    page.focus("input[name=PatientName]")
    for _ in range(40):  # Tab through the form and the headers to the first study's link
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#studies tbody') !== null"):
            break
    page.keyboard.press("Enter")
    page.wait_for_selector("#study-view:not([hidden])")
    assert "study=" in page.url
