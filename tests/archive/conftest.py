"""Fixtures of the archive tests: one archive holding the query catalogue per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from isthmus.archive import Archive
from isthmus.testing import catalogue


@pytest.fixture(scope="module")
def catalogue_archive(
    module_index_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    """An archive holding `isthmus.testing.catalogue`, shared by a module (read only)."""
    folder = tmp_path_factory.mktemp("catalogue")
    archive = Archive(module_index_url, f"file://{folder / 'blobs'}")
    try:
        catalogue.load(archive, folder / "files")
        yield archive
    finally:
        archive.close()
