"""The admin page in Chromium: jobs with progress and errors, cancel and retry buttons,
storage, settings, the audit trail (present, or absent: 404), on a desktop and a phone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.net import free_port
from isthmus.web.auth import hash_token

from .conftest import ARTIFACTS, ViewerData

AUDIT_EVENTS = [
    {
        "time": "2026-01-01T12:00:00+00:00",
        "event": "DICOM Instances Transferred",
        "action": "C",
        "outcome": "0",
        "user": "CT01",
        "source": "127.0.0.1",
        "patients": [{"id": "PID1", "name": "DOE^JANE"}],
        "studies": ["1.2.3"],
        "xml": "<AuditMessage/>",
    }
]


def audit(page: Any, events: list[dict[str, Any]] | None) -> None:
    """Answer /api/audit with `events`, or 404 (the audit trail not enabled)."""

    def handle(route: Any) -> None:
        if events is None:
            route.fulfill(status=404, content_type="application/json", body='{"error": "no"}')
        else:
            route.fulfill(status=200, content_type="application/json", body=json.dumps(events))

    page.route("**/api/audit*", handle)


def failed_job(node: Node) -> int:
    """A forward job to an unknown destination: the worker fails it with the reason."""
    pk = node.archive.jobs.enqueue("forward", ["1.2.3.4"], params={"destination": "NOWHERE"})
    deadline = 0
    while (job := node.archive.jobs.get(pk)) is None or job.status != "failed":
        deadline += 1
        assert deadline < 600, "the worker did not run the job"
        time.sleep(0.05)
    return pk


def test_admin_page_shows_jobs_and_cancels_and_retries_them(
    page: Any, base_url: str, viewer_node: tuple[Node, ViewerData]
) -> None:
    node, data = viewer_node
    failed = failed_job(node)
    queued = node.archive.jobs.enqueue(
        "forward",
        ["1.2.3.5", "1.2.3.6"],
        label="later",
        params={"destination": "PACS2"},
        delay=3600,
    )
    audit(page, AUDIT_EVENTS)
    page.goto(base_url + "admin.html")
    card = page.locator(f'#jobs li[data-job="{failed}"]')
    card.wait_for()
    assert card.get_attribute("data-status") == "failed"
    assert "not a known peer" in card.locator("[data-role=error]").text_content()
    waiting = page.locator(f'#jobs li[data-job="{queued}"]')
    assert (
        "0 done, 0 failed, 2 pending of 2" in waiting.locator("[data-role=counts]").text_content()
    )

    waiting.locator("[data-action=cancel]").click()
    page.wait_for_selector(f'#jobs li[data-job="{queued}"][data-status=cancelled]')
    assert node.archive.jobs.get(queued).status == "cancelled"  # type: ignore[union-attr]

    before = node.archive.jobs.get(failed).finished_at  # type: ignore[union-attr]
    card.locator("[data-action=retry]").click()
    for _ in range(600):  # the retry queued it, and the worker ran (and failed) it again
        again = node.archive.jobs.get(failed)
        assert again is not None
        if again.status == "failed" and again.finished_at and before and again.finished_at > before:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the retried job did not run again")
    page.click("#refresh")
    page.wait_for_selector(f'#jobs li[data-job="{failed}"][data-status=failed]')
    assert "DICOM Instances Transferred" in page.locator("#audit").text_content()
    storage = page.locator("#storage").text_content()
    assert "instances" in storage
    assert page.locator("#settings").text_content().count("ISTHMUS") >= 1


def test_admin_page_works_on_a_phone_without_an_audit_trail(
    phone: Any, base_url: str, viewer_node: tuple[Node, ViewerData]
) -> None:
    failed_job(viewer_node[0])
    phone.console_watch.allow("404")
    audit(phone, None)
    phone.goto(base_url + "admin.html")
    phone.wait_for_selector("#jobs li[data-job]")
    phone.wait_for_function("document.querySelector('#audit').textContent.includes('not enabled')")
    assert phone.locator("#audit").text_content() == "Audit trail not enabled."
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px screen"
    phone.locator("#jobs li[data-job] [data-action=retry] >> nth=0").tap()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "phone-admin.png"), full_page=True)


def test_admin_page_asks_for_a_token_and_says_when_it_lacks_the_admin_permission(
    page: Any, tmp_path: Path
) -> None:
    reader, admin = "reader-token-for-the-admin-page", "admin-token-for-the-admin-page"
    settings = Settings(
        data=tmp_path,
        dicom_port=free_port(),
        http_port=free_port(),
        check_on_start=False,
        tokens={
            "reader": {"hash": hash_token(reader), "permissions": ["read"]},
            "root": {"hash": hash_token(admin), "permissions": ["admin"]},
        },
    )
    page.console_watch.allow("40[134]")
    audit(page, None)
    with Node(settings) as node:
        page.goto(f"http://127.0.0.1:{node.http_port}/admin.html")
        page.fill("#token-dialog input[name=token]", reader)
        page.press("#token-dialog input[name=token]", "Enter")
        page.wait_for_function(
            "document.querySelector('#admin-status').textContent.includes('admin permission')"
        )
        page.evaluate(f"sessionStorage.setItem('isthmus.token', {json.dumps(admin)})")
        page.click("#refresh")
        page.wait_for_function(
            "document.querySelector('#admin-status').textContent.startsWith('Updated')"
        )
        assert page.locator("#jobs").text_content() == "No jobs."
