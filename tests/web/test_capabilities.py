"""Capabilities: OPTIONS answers a WADL document and the resource's Allow header."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx

WADL = "{http://wadl.dev.java.net/2009/02}"


def test_service_root_describes_every_transaction(web_node):
    response = httpx.request("OPTIONS", f"http://127.0.0.1:{web_node.http_port}/dicom-web")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.sun.wadl+xml")
    root = ET.fromstring(response.content)
    paths = {r.get("path") for r in root.iter(WADL + "resource")}
    assert {
        "studies",
        "series",
        "instances",
        "studies/{study}/metadata",
        "studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
        "studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
        "studies/{study}/thumbnail",
        "workitems",
        "workitems/{workitem}/state",
        "workitems/{workitem}/subscribers/{aetitle}/suspend",
    } <= paths
    methods = {m.get("name") for m in root.iter(WADL + "method")}
    assert methods == {"GET", "POST", "PUT", "DELETE"}  # PUT: UPS-RS change state


def test_allow_header_per_resource(http):
    assert http.request("OPTIONS", "/studies").headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert "DELETE" in http.request("OPTIONS", "/studies/1.2.3").headers["allow"]
    metadata = http.request("OPTIONS", "/studies/1.2.3/series/4.5/metadata")
    assert metadata.headers["allow"] == "GET, HEAD, OPTIONS"


def test_unknown_resource_is_404(http):
    assert http.request("OPTIONS", "/nothing/here").status_code == 404
    assert http.get("/nothing/here").status_code == 404
