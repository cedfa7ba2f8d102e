"""Fixtures of the archive tests: one archive holding the query catalogue per backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from isthmus.archive import Archive
from isthmus.archive.index import create_engine
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


@contextmanager
def engine_with(index_url: str, meta: sa.MetaData) -> Iterator[sa.Engine]:
    """An index engine on `index_url` with the tables of `meta` created, disposed after."""
    eng = create_engine(index_url)
    meta.create_all(eng)
    try:
        yield eng
    finally:
        eng.dispose()
