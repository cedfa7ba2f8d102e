"""The admin page in Chromium: jobs with progress and errors, cancel and retry buttons,
storage, settings, the audit trail (present, or absent: 404), on a desktop and a phone;
the Federation section (hidden without a relay; a real two-site federation; accepting a
site's new keys)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.relay.status_support import federation_with_a_move, finished_transfer

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.federation import Federation
from isthmus.testing.net import free_port
from isthmus.testing.seaweedfs import TemporarySeaweedFS
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


class FixedRelay:
    """A `RelayView` (web/context.py) with fixed data: site C offers new keys, which
    `accept` trusts.  The real federation is in `test_admin_page_shows_the_federation`."""

    OLD, NEW = "c0" * 16, "c1" * 16

    def __init__(self) -> None:
        self.accepted: list[tuple[str, str]] = []
        self.sites: list[dict[str, Any]] = [
            {"site": "B", "fingerprint": "b0" * 16, "pinned": True, "revoked": False},
            {"site": "C", "fingerprint": self.OLD, "pinned": True, "revoked": False},
        ]
        self.sites[1]["refused_fingerprint"] = self.NEW

    def status(self) -> dict[str, Any]:
        services = ["echo", "find", "move"]
        transfer = {
            "id": "B.A.0001",
            "direction": "receiving",
            "source": "B",
            "destination": "A",
            "destination_aet": "STOREA",
            "status": "receiving",
            "delivered": 4,
            "failed": 1,
            "expected": 10,
            "remaining": 5,
            "started": "2026-01-01T12:00:00+00:00",
            "updated": "2026-01-01T12:00:05+00:00",
            "finished": None,
        }
        return {
            "site": "A",
            "fingerprint": "a0" * 16,
            "bridge": "http://127.0.0.1:9",
            "connected": False,
            "exports": [{"aet": "PACSA", "services": services, "sites": ["*"]}],
            "imports": [{"aet": "PACSB", "services": services, "sites": ["*"], "site": "B"}],
            "sites": self.sites,
            "transfers": [transfer],
        }

    class sharing:  # noqa: N801  # what p2p/web.py asks of a site's discovery
        @staticmethod
        def status() -> dict[str, Any]:
            listing = {
                "link_id": "L1",
                "site": "B",
                "online": True,
                "patient_name": "DOE^JANE",
                "description": "CT CHEST",
                "study_date": "20240115",
                "instances": 12,
                "expires_at": "2026-01-08T12:00:00+00:00",
            }
            return {"site": "A", "online": ["A", "B"], "shares": [listing]}

    def accept(self, site: str, fingerprint: str) -> None:
        if site != "C" or fingerprint != self.NEW:
            raise ValueError(f"site {site!r} presents no new keys {fingerprint}")
        self.accepted.append((site, fingerprint))
        self.sites[1] = {"site": "C", "fingerprint": self.NEW, "pinned": True, "revoked": False}

    def close(self) -> None:
        """What Node.stop calls of its relay."""


def test_admin_page_hides_the_federation_of_a_node_without_relay(page: Any, base_url: str) -> None:
    audit(page, AUDIT_EVENTS)
    page.goto(base_url + "admin.html")
    page.wait_for_function(
        "document.querySelector('#admin-status').textContent.startsWith('Updated')"
    )
    assert page.locator("#federation").is_hidden()


def test_admin_page_accepts_a_sites_new_keys_after_a_confirm_showing_them(
    page: Any, tmp_path: Path
) -> None:
    settings = Settings(
        data=tmp_path, dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    relay = FixedRelay()
    node = Node(settings)
    node.relay = relay  # type: ignore[assignment]  # a RelayView is all the web door uses
    questions: list[str] = []

    def confirm(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    with node:
        page.goto(f"http://127.0.0.1:{node.http_port}/admin.html")
        page.locator("#federation").wait_for()
        assert "NATSdisconnected" in page.locator("#federation-site").text_content()
        assert page.locator("#federation-imports li[data-aet=PACSB]").text_content() == (
            "PACSBat site Becho, find, move"
        )
        assert page.locator("#federation-exports li[data-aet=PACSA]").count() == 1
        progress = page.locator("#federation-transfers li[data-transfer='B.A.0001'] progress")
        assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("5", "10")
        counts = page.locator("#federation-transfers [data-role=counts]").text_content()
        assert counts == "4 delivered, 1 failed of 10"
        shared = page.locator("#federation-shares li[data-link=L1]")
        assert shared.get_attribute("data-online") == "true"
        assert "DOE^JANE · CT CHEST · 20240115" in shared.text_content()
        assert page.locator("#federation-sites li[data-site=B]").get_attribute("data-state") == (
            "trusted"
        )
        changed = page.locator("#federation-sites li[data-site=C]")
        assert changed.get_attribute("data-state") == "changed"
        assert page.locator("#federation-sites [data-action=accept]").count() == 1
        changed.locator("[data-action=accept]").click()
        page.wait_for_selector("#federation-sites li[data-site=C][data-state=trusted]")
    assert relay.accepted == [("C", FixedRelay.NEW)]
    assert len(questions) == 1 and FixedRelay.NEW in questions[0]


def test_the_federation_section_fits_a_phone(phone: Any, tmp_path: Path) -> None:
    settings = Settings(
        data=tmp_path, dicom_port=free_port(), http_port=free_port(), check_on_start=False
    )
    node = Node(settings)
    node.relay = FixedRelay()  # type: ignore[assignment]
    with node:
        phone.goto(f"http://127.0.0.1:{node.http_port}/admin.html")
        phone.locator("#federation-transfers progress").wait_for()
        width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page is {width}px wide on a 390px screen"


@pytest.fixture(scope="module")
def federation(
    tmp_path_factory: pytest.TempPathFactory, seaweedfs: TemporarySeaweedFS
) -> Iterator[Federation]:
    with federation_with_a_move(tmp_path_factory.mktemp("admin-federation"), seaweedfs) as running:
        yield running


@pytest.mark.dcmtk
def test_admin_page_shows_the_federation(page: Any, federation: Federation) -> None:
    """Site A's page, in a real federation: site B with its fingerprint, trusted, B's AE
    titles, A's own, and the transfer of the C-MOVE from B with its progress."""
    a, b = federation.sites["A"], federation.sites["B"]
    transfer = finished_transfer(a)
    page.goto(f"http://127.0.0.1:{a.http_port}/admin.html")
    page.locator("#federation").wait_for()
    site = page.locator("#federation-site").text_content()
    assert f"siteAfingerprint{a.relay_status()['fingerprint']}" in site
    assert "NATSconnected" in site
    card = page.locator("#federation-sites li[data-site=B]")
    assert card.get_attribute("data-state") == "trusted"
    assert card.locator("[data-role=fingerprint]").text_content() == b.relay_status()["fingerprint"]
    imported = page.locator("#federation-imports li").evaluate_all(
        "cards => cards.map(c => c.dataset.aet)"
    )
    assert {"PACSB", "STOREB", "ISTHMUSB"} <= set(imported)
    services = page.locator("#federation-imports li[data-aet=PACSB]").text_content()
    assert services.endswith("echo, find, get, move, store")
    assert page.locator("#federation-exports li[data-aet=PACSA]").count() == 1
    moved = page.locator(f"#federation-transfers li[data-transfer='{transfer['id']}']")
    assert moved.get_attribute("data-status") == "complete"
    assert "STOREA from site B" in moved.text_content()
    assert moved.locator("progress").get_attribute("value") == "3"
    assert moved.locator("[data-role=counts]").text_content() == "3 delivered, 0 failed of 3"
