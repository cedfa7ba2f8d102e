"""OHIF v3 from its npm package, served next to Isthmus, driven by headless Chromium.

The package's prebuilt `dist/` is fetched once with `npm pack` into `.cache/ohif/`
(git-ignored) and reused; the test serves it from its own loopback port with an
`app-config.js` whose DICOMweb data source is the Isthmus node under test, so the
viewer talks to Isthmus cross-origin, as a separately hosted OHIF would.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from isthmus.testing.chromium import CHROMIUM_ARGS
from isthmus.testing.net import free_port

OHIF_VERSION = "3.13.2"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "ohif" / OHIF_VERSION
# OHIF renders with WebGL: software GL (SwiftShader) where there is no GPU.
OHIF_CHROMIUM_ARGS = [*CHROMIUM_ARGS, "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def ohif_dist() -> Path:
    """OHIF's prebuilt viewer, from the npm registry the first time, then from the cache."""
    dist = CACHE / "dist"
    if (dist / "index.html").is_file():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed once to fetch @ohif/app (apt-get install npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "pack", f"@ohif/app@{OHIF_VERSION}", "--pack-destination", str(CACHE), "--silent"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"npm pack @ohif/app failed: {done.stderr[-1000:]}")
    tarball = next(CACHE.glob("ohif-app-*.tgz"))
    staging = CACHE / "staging"
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith("package/dist/")]
        archive.extractall(staging, members=members, filter="data")
    (staging / "package" / "dist").rename(dist)
    shutil.rmtree(staging, ignore_errors=True)
    tarball.unlink()
    return dist


def app_config(isthmus: str) -> str:
    """OHIF's configuration: one DICOMweb data source, the Isthmus node (docs/conformance.md)."""
    return f"""window.config = {{
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 1,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: {{ option: 'never' }},
  defaultDataSourceName: 'isthmus',
  dataSources: [{{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'isthmus',
    configuration: {{
      friendlyName: 'Isthmus',
      name: 'isthmus',
      wadoUriRoot: '{isthmus}/wado',
      qidoRoot: '{isthmus}/dicom-web',
      wadoRoot: '{isthmus}/dicom-web',
      qidoSupportsIncludeField: true,
      supportsReject: false,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: true,
      supportsWildcard: true,
      omitQuotationForMultipartRequest: true,
      bulkDataURI: {{ enabled: true }},
    }},
  }}],
}};
"""


def ohif_app(dist: Path, config: str) -> Starlette:
    """OHIF's files, its app-config.js replaced, index.html for every client-side route."""

    async def config_js(request: Request) -> Response:
        return Response(config, media_type="application/javascript")

    async def spa(request: Request) -> Response:
        return FileResponse(dist / "index.html")

    return Starlette(
        routes=[
            Route("/app-config.js", config_js),
            Route("/viewer", spa),
            Route("/viewer/{rest:path}", spa),
            Mount("/", app=StaticFiles(directory=dist, html=True)),
        ]
    )


@pytest.fixture(scope="session")
def ohif_files() -> Path:
    return ohif_dist()


class StaticServer:
    """uvicorn in a thread on a free loopback port, stopped by stop()."""

    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> StaticServer:
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve_ohif(ohif_files: Path) -> Iterator:
    """serve_ohif(isthmus_base_url) → the URL OHIF is served at (stopped after the test)."""
    servers: list[StaticServer] = []

    def start(isthmus: str, port: int | None = None) -> str:
        server = StaticServer(ohif_app(ohif_files, app_config(isthmus)))
        if port is not None:
            server.port = port
            server.server.config.port = port
        servers.append(server.__enter__())
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.__exit__()
