"""Keyed-hash pseudonyms: PS3.5 B.2 UIDs from RFC 9562 version 8 UUIDs, short codes."""

from __future__ import annotations

import uuid

import pytest

from isthmus.deid.pseudonyms import Pseudonyms


def test_a_uid_is_2_25_and_a_version_8_uuid_fixed_by_key_and_input() -> None:
    p = Pseudonyms(b"a" * 32)
    uids = {p.uid(f"1.2.3.{n}") for n in range(200)}
    assert len(uids) == 200 and p.uid("1.2.3.0") in uids
    for uid in uids:
        assert uid.startswith("2.25.") and len(uid) <= 64
        value = uuid.UUID(int=int(uid[5:]))
        assert value.version == 8 and value.variant == uuid.RFC_4122
    assert Pseudonyms(b"b" * 32).uid("1.2.3.0") != p.uid("1.2.3.0")


def test_codes_fit_their_vr_and_parts_do_not_run_together() -> None:
    p = Pseudonyms(b"a" * 32)
    code = p.identifier("accession", "x", prefix="A")
    assert len(code) == 16 and code.startswith("A") and code.isalnum() and code.isupper()
    assert p.identifier("t", "a", "bc") != p.identifier("t", "ab", "c")
    assert all(1 <= p.days("shift", str(n)) <= 3652 for n in range(100))


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="128 bits"):
        Pseudonyms(b"short")
