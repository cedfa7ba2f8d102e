"""Sharing from the study view (docs/p2p.md): a link made for the study on screen, listed
with its state, and revoked from the same dialog; the node's share API is what changed."""

from __future__ import annotations

import re
from typing import Any

from isthmus.server import Node

from .browser import open_study
from .conftest import ViewerData

LINK = re.compile(r"^http://127\.0\.0\.1:\d+/share/([A-Za-z0-9_-]{16})#[A-Za-z0-9_-]{43}$")


def test_a_link_is_made_for_the_study_listed_and_revoked_from_the_viewer(
    page: Any, base_url: str, viewer_data: ViewerData, viewer_node: tuple[Node, ViewerData]
) -> None:
    node, _ = viewer_node
    open_study(page, base_url, viewer_data.phantom_study)
    page.click("#share-study")
    page.select_option("#share-expires", "1d")
    page.click("#share-make")
    page.wait_for_selector("#share-made:not([hidden])")
    match = LINK.match(page.input_value("#share-link"))
    assert match, page.input_value("#share-link")
    link_id = match.group(1)
    share = node.archive.shares.get(link_id)
    assert share is not None and share.study_instance_uid == viewer_data.phantom_study
    assert share.state() == "active"
    row = page.locator("#share-list tbody tr", has=page.locator(f"[data-link-id='{link_id}']"))
    row.wait_for()
    assert row.get_attribute("data-state") == "active"

    row.locator("button").click()
    page.wait_for_selector(f"#share-list tr[data-state='revoked'] [data-link-id='{link_id}']")
    assert node.archive.shares.get(link_id).state() == "revoked"  # type: ignore[union-attr]
    assert "revoked" in page.inner_text("#share-status")


def test_a_refused_share_says_why_in_the_dialog(
    page: Any, base_url: str, viewer_data: ViewerData
) -> None:
    page.console_watch.allow(r"status of 400")  # the refusal the dialog shows
    open_study(page, base_url, viewer_data.phantom_study)
    page.click("#share-study")
    page.check("#share-federation")  # this node is not in a federation
    page.click("#share-make")
    page.wait_for_function(
        "() => document.querySelector('#share-status').textContent.startsWith('Could not')"
    )
    assert "federation" in page.inner_text("#share-status")
    assert page.is_hidden("#share-made")
