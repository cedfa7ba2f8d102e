"""The app as a whole: JSON errors, CORS, the viewer's static files behind the API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.web.conftest import node_settings

from isthmus.server import Node
from isthmus.web import app as app_module


def test_errors_are_json_never_html(http):
    for response in (
        http.get("/no/such/thing"),
        http.put("/studies"),
        http.get("/studies", params={"StudyDate": "x"}),
    ):
        assert response.headers["content-type"] == "application/json"
        assert set(response.json()) == {"status", "error", "message"}


@pytest.fixture
def cors_node(tmp_path):
    with Node(node_settings(tmp_path, cors_origins=("https://viewer.example",))) as node:
        yield node


def test_cors_preflight_and_exposed_headers(cors_node):
    base = f"http://127.0.0.1:{cors_node.http_port}/dicom-web"
    preflight = httpx.request(
        "OPTIONS",
        base + "/studies",
        headers={
            "Origin": "https://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, accept",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://viewer.example"
    response = httpx.get(base + "/studies", headers={"Origin": "https://viewer.example"})
    assert response.headers["access-control-allow-origin"] == "https://viewer.example"
    other = httpx.get(base + "/studies", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_headers_unless_configured(http):
    response = http.get("/studies", headers={"Origin": "https://viewer.example"})
    assert "access-control-allow-origin" not in response.headers


def test_viewer_files_are_served_after_the_api(tmp_path, monkeypatch):
    viewer = tmp_path / "viewer"
    viewer.mkdir()
    (viewer / "index.html").write_text("<h1>viewer</h1>")
    (viewer / "app.js").write_text("console.log(1)")
    monkeypatch.setattr(app_module, "VIEWER_DIR", viewer)
    with Node(node_settings(tmp_path)) as node:
        base = f"http://127.0.0.1:{node.http_port}"
        assert httpx.get(base + "/").text == "<h1>viewer</h1>"
        assert httpx.get(base + "/app.js").text == "console.log(1)"
        assert httpx.get(base + "/health").json()["status"] == "ok"
        assert httpx.get(base + "/dicom-web/studies").status_code == 204


def test_no_viewer_folder_means_no_static_routes(tmp_path: Path):
    assert app_module.viewer_routes(tmp_path / "missing") == []
