"""With authentication on, the viewer asks for a token and keeps it for the session only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.config import Settings
from isthmus.server import Node
from isthmus.testing.net import free_port
from isthmus.web.auth import hash_token

TOKEN = "viewer-test-token-0123456789"


@pytest.fixture
def secured_url(tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        data=tmp_path,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{tmp_path / 'index.sqlite'}",
        check_on_start=False,
        tokens={"viewer": {"hash": hash_token(TOKEN), "permissions": ["read", "write"]}},
    )
    with Node(settings) as node:
        yield f"http://127.0.0.1:{node.http_port}/"


def test_token_is_asked_for_and_kept_in_session_storage(page: Any, secured_url: str) -> None:
    page.console_watch.allow("401")
    page.goto(secured_url)
    dialog = page.locator("#token-dialog")
    dialog.wait_for(state="visible")
    page.fill("#token-dialog input[name=token]", "wrong-token")
    page.press("#token-dialog input[name=token]", "Enter")
    page.wait_for_function(
        "document.querySelector('#token-dialog [data-role=message]').textContent.includes('refused')"
    )
    page.fill("#token-dialog input[name=token]", TOKEN)
    page.click("#token-dialog button[type=submit]")
    page.wait_for_function(
        "document.querySelector('#list-status').textContent === 'No studies match.'"
    )
    assert page.evaluate("sessionStorage.getItem('isthmus.token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0
    assert page.locator("#sign-out").is_visible()
    # A reload in the same tab keeps it; a new tab (a new session) must ask again.
    page.reload()
    page.wait_for_function(
        "document.querySelector('#list-status').textContent === 'No studies match.'"
    )
    assert dialog.is_hidden()
    other = page.context.new_page()
    other.goto(secured_url)
    other.locator("#token-dialog").wait_for(state="visible")
    other.close()


def test_cancelling_the_token_prompt_reports_the_refusal(page: Any, secured_url: str) -> None:
    page.console_watch.allow("401")
    page.goto(secured_url)
    page.locator("#token-dialog").wait_for(state="visible")
    page.click("#token-dialog [data-role=cancel]")
    page.wait_for_function("document.querySelector('#list-status').classList.contains('error')")
    assert "Search failed" in page.locator("#list-status").text_content()
