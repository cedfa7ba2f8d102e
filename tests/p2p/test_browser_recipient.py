"""The browser recipient of a share link (docs/p2p.md, "The browser recipient"): headless
Chromium opens /share/LINK_ID#SECRET on a running node and pulls the study over WebRTC into
IndexedDB, byte-identical, without a DICOMweb request; a wrong secret, a revoked and an
expired link are refused with a clear message; an interrupted transfer resumes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from tests.viewer.browser import CHROMIUM, CHROMIUM_ARGS, WEBRTC_ARGS

from isthmus.config import Settings
from isthmus.p2p.signalling import link_url
from isthmus.server import Node
from isthmus.testing.generate import StudySpec, study
from isthmus.testing.net import free_port

pytest.importorskip("aiolibdatachannel")
playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(180)
SERIES, PER_SERIES = 2, 10

# The bytes of every instance the page holds in IndexedDB, as SHA-256 hex by SOP UID.
STORED_DIGESTS = """async (study) => {
  const { InstanceStore } = await import('/dicomnet/idbstore.js');
  const store = await new InstanceStore().open();
  const out = {};
  for (const uid of await store.keys(study)) {
    const record = await store.get(uid);
    const digest = await crypto.subtle.digest('SHA-256', record.part10);
    out[uid] = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return out;
}"""

# Close the page's data channel after `limit` chunks: the connection lost mid-transfer.
CUT_AFTER = """(limit) => {
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    let chunks = 0;
    channel.addEventListener('message', (event) => {
      if (typeof event.data !== 'string' && ++chunks === limit) channel.close();
    });
    return channel;
  };
}"""

# Resume the page only `ms` after its answer is applied: by then the channel is open and
# the node has sent the manifest (a busy page or a slow signalling thread, made certain).
SLOW_TO_APPLY_THE_ANSWER = """(ms) => {
  const apply = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = async function (...args) {
    await apply.apply(this, args);
    await new Promise((resolve) => setTimeout(resolve, ms));
  };
}"""


@dataclass
class Sharing:
    node: Node
    study: str
    digests: dict[str, str]  # SOP Instance UID → SHA-256 of the stored Part 10 file

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.node.http_port}"

    def link(self, lifetime: timedelta = timedelta(days=1)) -> tuple[str, str]:
        row = self.node.archive.shares.create(self.study, lifetime)
        return link_url(self.base, row.link_id, row.secret), row.link_id


def node_settings(data: Path, **p2p: Any) -> Settings:
    return Settings(
        data=data,
        dicom_port=free_port(),
        http_port=free_port(),
        index_url=f"sqlite:///{data / 'index.sqlite'}",
        check_on_start=False,
        **p2p,
    )


@contextlib.contextmanager
def sharing_node(settings: Settings, spec: StudySpec) -> Iterator[Sharing]:
    """A running node holding the study `spec` describes."""
    with Node(settings) as node:
        uid = ""
        for ds in study(spec):
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            assert node.archive.store(buffer.getvalue()).ok
            uid = str(ds.StudyInstanceUID)
        digests = {
            r.sop_instance_uid: hashlib.sha256(node.archive.read_instance(r)).hexdigest()
            for r in node.archive.instances(uid)
        }
        yield Sharing(node, uid, digests)


@pytest.fixture(scope="module")
def sharing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sharing]:
    """A node holding a CT study of 512 × 512 images (SQLite)."""
    spec = StudySpec(series_count=SERIES, instances_per_series=PER_SERIES, rows=512, columns=512)
    with sharing_node(node_settings(tmp_path_factory.mktemp("sharing-node")), spec) as node:
        yield node


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + WEBRTC_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh profile (its own IndexedDB) per test."""
    context = browser.new_context()
    context.set_default_timeout(60_000)
    try:
        yield context
    finally:
        context.close()


def open_link(
    context: Any, link: str, init: tuple[str, Any] | None = None
) -> tuple[Any, list[str]]:
    """Open the link in a new page; (page, the URLs it requested)."""
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    if init is not None:
        page.add_init_script(script=f"({init[0]})({json.dumps(init[1])})")
    page.goto(link)
    return page, requests


def ended(page: Any) -> dict[str, Any]:
    """The page's outcome once the transfer ended (complete or failed)."""
    page.wait_for_function("() => ['complete', 'failed'].includes(window.__share?.status)")
    return page.evaluate("() => ({...window.__share})")


def test_a_shared_study_arrives_in_indexeddb_byte_identical(sharing: Sharing, context: Any) -> None:
    link, _ = sharing.link()
    page, _ = open_link(context, link)
    outcome = ended(page)
    assert outcome["status"] == "complete", outcome["message"]
    assert "Complete and verified" in page.locator("#share-status").inner_text()
    assert page.evaluate(STORED_DIGESTS, sharing.study) == sharing.digests


def test_a_manifest_sent_before_the_page_resumes_from_the_answer_is_not_lost(
    sharing: Sharing, context: Any
) -> None:
    link, _ = sharing.link()
    page, _ = open_link(context, link, (SLOW_TO_APPLY_THE_ANSWER, 1500))
    outcome = ended(page)
    assert outcome["status"] == "complete", outcome["message"]
    assert page.evaluate(STORED_DIGESTS, sharing.study) == sharing.digests


def test_the_page_asks_the_node_only_for_itself_its_scripts_and_signalling(
    sharing: Sharing, context: Any
) -> None:
    link, link_id = sharing.link()
    page, requests = open_link(context, link)
    outcome = ended(page)
    assert outcome["status"] == "complete", outcome["message"]
    to_node = [u.removeprefix(sharing.base) for u in requests if u.startswith(sharing.base)]
    assert not [u for u in to_node if u.startswith(("/dicom-web", "/wado", "/api/admin"))]
    api = sorted({u for u in to_node if u.startswith("/api/")})
    assert api == [f"/api/p2p/{link_id}/ice", f"/api/p2p/{link_id}/offer"]
    others = [u for u in to_node if not u.startswith("/api/")]
    assert f"/share/{link_id}" in others
    assert all(u.endswith((".js", ".css", ".svg")) for u in others if u != f"/share/{link_id}")


def test_the_first_image_is_on_screen_before_the_transfer_ends(
    sharing: Sharing, context: Any
) -> None:
    link, _ = sharing.link()
    page, _ = open_link(context, link)
    outcome = ended(page)
    assert outcome["status"] == "complete", outcome["message"]
    assert outcome["firstImageAt"] is not None and outcome["firstImageAt"] < outcome["doneAt"]
    size = page.evaluate(
        "() => [document.querySelector('#share-canvas').width, document.querySelector('#share-canvas').height]"
    )
    assert size == [512, 512]


def test_a_wrong_secret_is_refused_with_a_clear_message(sharing: Sharing, context: Any) -> None:
    link, _ = sharing.link()
    page, _ = open_link(context, link[:-4] + "AAAA")
    outcome = ended(page)
    assert outcome["status"] == "failed"
    assert "does not prove knowledge of the link's secret" in outcome["message"]


def test_a_revoked_link_is_refused_with_a_clear_message(sharing: Sharing, context: Any) -> None:
    link, link_id = sharing.link()
    assert sharing.node.archive.shares.revoke(link_id)
    page, _ = open_link(context, link)
    outcome = ended(page)
    assert outcome["status"] == "failed" and "was revoked" in outcome["message"]
    assert "was revoked" in page.locator("#share-status").inner_text()


def test_an_expired_link_is_refused_with_a_clear_message(sharing: Sharing, context: Any) -> None:
    link, _ = sharing.link(timedelta(seconds=1))
    time.sleep(1.2)  # past its expiry
    page, _ = open_link(context, link)
    outcome = ended(page)
    assert outcome["status"] == "failed" and "expired at" in outcome["message"]


def test_reopening_an_interrupted_link_asks_only_for_what_is_missing(
    sharing: Sharing, context: Any
) -> None:
    link, _ = sharing.link()
    first, _ = open_link(context, link, (CUT_AFTER, 16))
    cut = ended(first)
    assert cut["status"] == "failed" and "open the link again to resume" in cut["message"]
    held = first.evaluate(STORED_DIGESTS, sharing.study)
    first.close()
    total = SERIES * PER_SERIES
    assert 1 <= len(held) < total
    again, _ = open_link(context, link)
    outcome = ended(again)
    assert outcome["status"] == "complete", outcome["message"]
    figures = outcome["figures"]
    assert figures["already"] == len(held)
    assert len(figures["requested"]) == total - len(held)
    assert again.evaluate(STORED_DIGESTS, sharing.study) == sharing.digests


# Flip one byte of the first chunk of instance `position`, before the page sees it.
SPOIL_ONE_CHUNK = """(position) => {
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    let spoiled = false;
    channel.addEventListener('message', (event) => {
      if (spoiled || typeof event.data === 'string') return;
      const bytes = new Uint8Array(event.data);
      const at = new DataView(event.data).getUint32(1);
      if (at === position) {
        bytes[200] ^= 0xff;
        spoiled = true;
      }
    });
    return channel;
  };
}"""

# The manifest names study `study` (a lying sharing node): the page's listeners get the
# manifest with that study, the instances the node sends are of the real one.
RENAME_THE_MANIFESTS_STUDY = """(study) => {
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    const listen = channel.addEventListener.bind(channel);
    channel.addEventListener = (type, listener, ...rest) => {
      if (type !== 'message') return listen(type, listener, ...rest);
      return listen('message', (event) => {
        const doc = typeof event.data === 'string' ? JSON.parse(event.data) : null;
        if (doc?.type !== 'manifest') return listener(event);
        listener({ data: JSON.stringify({ ...doc, study }) });
      }, ...rest);
    };
    return channel;
  };
}"""

# Record the RTCConfiguration the page creates its peer connection with.
RECORD_CONFIGURATION = """() => {
  const Native = RTCPeerConnection;
  window.RTCPeerConnection = function (config) {
    window.__iceConfig = config;
    return new Native(config);
  };
  window.RTCPeerConnection.prototype = Native.prototype;
}"""


def test_a_corrupted_chunk_is_fetched_again_and_the_stored_study_is_identical(
    sharing: Sharing, context: Any
) -> None:
    link, _ = sharing.link()
    page, _ = open_link(context, link, (SPOIL_ONE_CHUNK, 3))
    outcome = ended(page)
    assert outcome["status"] == "complete", outcome["message"]
    assert outcome["figures"]["refetched"] == 1
    assert page.evaluate(STORED_DIGESTS, sharing.study) == sharing.digests


def test_instances_of_another_study_than_the_manifests_are_refused_and_the_page_fails(
    sharing: Sharing, context: Any
) -> None:
    """The page stores an instance only if it is of the manifest's study: a sharing node
    cannot slip instances into another study this browser holds."""
    link, _ = sharing.link()
    page, _ = open_link(context, link, (RENAME_THE_MANIFESTS_STUDY, "1.2.3.4"))
    outcome = ended(page)
    assert outcome["status"] == "failed"
    assert f"{SERIES * PER_SERIES} instance(s) refused" in outcome["message"]
    assert "Study Instance UID is not the manifest's study" in outcome["message"]
    assert "Complete and verified" not in page.locator("#share-status").inner_text()
    assert page.evaluate(STORED_DIGESTS, sharing.study) == {}
    assert page.evaluate(STORED_DIGESTS, "1.2.3.4") == {}


def test_a_node_without_ice_servers_gives_the_page_none_and_every_path(
    sharing: Sharing, context: Any
) -> None:
    link, _ = sharing.link()
    page, _ = open_link(context, link, (RECORD_CONFIGURATION, None))
    outcome = ended(page)
    assert outcome["status"] == "complete", outcome["message"]
    config = page.evaluate("() => window.__iceConfig")
    assert config == {"iceServers": [], "iceTransportPolicy": "all"}


def test_the_page_uses_the_ice_servers_and_policy_the_node_gives(
    sharing: Sharing, context: Any
) -> None:
    link, link_id = sharing.link()
    turn = {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u", "credential": "c"}
    page = context.new_page()
    page.route(
        f"**/api/p2p/{link_id}/ice",
        lambda route: route.fulfill(json={"ice_servers": [turn], "relay_only": True}),
    )
    page.add_init_script(script=f"({RECORD_CONFIGURATION})()")
    page.goto(link)
    page.wait_for_function("() => window.__iceConfig !== undefined")
    config = page.evaluate("() => window.__iceConfig")
    assert config == {"iceServers": [turn], "iceTransportPolicy": "relay"}
    page.close()


def test_the_received_study_downloads_as_a_zip_of_its_files(
    sharing: Sharing, context: Any, tmp_path: Path
) -> None:
    import zipfile

    link, _ = sharing.link()
    page, _ = open_link(context, link)
    outcome = ended(page)
    assert outcome["status"] == "complete", outcome["message"]
    with page.expect_download() as download:
        page.click("#share-zip")
    target = tmp_path / "study.zip"
    download.value.save_as(target)
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        digests = sorted(hashlib.sha256(archive.read(n)).hexdigest() for n in names)
    assert len(names) == SERIES * PER_SERIES and all(n.endswith(".dcm") for n in names)
    assert digests == sorted(sharing.digests.values())


def test_relay_only_through_coturn_the_study_arrives_over_relayed_candidates(
    tmp_path: Path, context: Any
) -> None:
    """TURN forced: the node says relay-only (its /ice mints coturn REST credentials), so
    the page and the node both offer relayed candidates only, and coturn carries it all."""
    from isthmus.testing.turn import TemporaryTURN, turnserver_binary

    if turnserver_binary() is None:
        pytest.skip("coturn not installed")
    secret = "browser-turn-secret"
    with TemporaryTURN(secret=secret) as turn:
        settings = node_settings(
            tmp_path, p2p_ice_servers=(turn.url,), p2p_turn_secret=secret, p2p_relay_only=True
        )
        spec = StudySpec(series_count=1, instances_per_series=6, rows=256, columns=256)
        with sharing_node(settings, spec) as relayed:
            link, _ = relayed.link()
            page, _ = open_link(context, link, (RECORD_CONFIGURATION, None))
            outcome = ended(page)
            assert outcome["status"] == "complete", outcome["message"]
            assert page.evaluate("() => window.__iceConfig.iceTransportPolicy") == "relay"
            assert page.evaluate(STORED_DIGESTS, relayed.study) == relayed.digests
        assert turn.allocations() >= 2  # one per side: both ends went through coturn
