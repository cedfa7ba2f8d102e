"""Ids that name their worker, and which sibling a request belongs to (web/siblings.py)."""

from __future__ import annotations

from isthmus.web.siblings import VIA_HEADER, holder_of, new_id

SIBLINGS = {"w1": "http://127.0.0.1:40001", "w2": "http://127.0.0.1:40002"}


def test_an_id_names_its_worker_only_when_there_are_workers():
    assert new_id("w0").startswith("w0.")
    assert "." not in new_id("")
    assert new_id("w0") != new_id("w0")


def test_a_request_for_a_siblings_id_belongs_to_that_sibling():
    assert holder_of("w2.abc", "w0", SIBLINGS, {}) == "http://127.0.0.1:40002"


def test_own_unknown_unprefixed_and_passed_on_ids_belong_to_no_sibling():
    assert holder_of("w0.abc", "w0", SIBLINGS, {}) is None  # this worker's own
    assert holder_of("w9.abc", "w0", SIBLINGS, {}) is None  # no such worker
    assert holder_of("abc", "w0", SIBLINGS, {}) is None  # a single process's id
    assert holder_of("w1.abc", "", SIBLINGS, {}) is None  # not a worker
    assert holder_of("w1.abc", "w0", SIBLINGS, {VIA_HEADER: "w2"}) is None  # never twice
