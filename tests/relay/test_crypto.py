"""Envelopes between relay routers (relay/crypto.py): sealed to one site, signed by another."""

from __future__ import annotations

import json
import os

import pytest

from isthmus.relay.crypto import EnvelopeError, SiteIdentity, compress, decompress, peek_header


@pytest.fixture()
def sites() -> tuple[SiteIdentity, SiteIdentity, SiteIdentity]:
    return SiteIdentity.create("A"), SiteIdentity.create("B"), SiteIdentity.create("C")


def test_the_recipient_opens_what_the_sender_sealed(sites) -> None:
    a, b, _ = sites
    sealed = a.seal("B", b.keys, {"kind": "find"}, b"PatientName=DOE^JOHN")
    opened = b.open(sealed, {"A": a.keys}.get)
    assert opened.body == b"PatientName=DOE^JOHN"
    assert opened.header["from"] == "A" and opened.header["kind"] == "find"
    assert b"DOE" not in sealed


def test_another_site_cannot_open_an_envelope_not_addressed_to_it(sites) -> None:
    a, b, c = sites
    sealed = a.seal("B", b.keys, {}, b"secret")
    with pytest.raises(EnvelopeError, match="not for 'C'"):
        c.open(sealed, {"A": a.keys}.get)


def test_a_flipped_bit_anywhere_is_refused(sites) -> None:
    a, b, _ = sites
    sealed = a.seal("B", b.keys, {"kind": "x"}, os.urandom(2000))
    for position in (10, 80, len(sealed) // 2, len(sealed) - 1):
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(EnvelopeError):
            b.open(bytes(damaged), {"A": a.keys}.get)


def test_a_third_site_cannot_sign_as_the_sender(sites) -> None:
    a, b, c = sites
    forged = c.seal("B", b.keys, {}, b"from A, really")
    head_len = int.from_bytes(forged[68:72], "big")
    header = json.loads(forged[72 : 72 + head_len])
    header["from"] = "A"
    new_head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    forged = forged[:68] + len(new_head).to_bytes(4, "big") + new_head + forged[72 + head_len :]
    with pytest.raises(EnvelopeError, match="not signed by 'A'"):
        b.open(forged, {"A": a.keys, "C": c.keys}.get)


def test_an_unknown_or_revoked_sender_is_refused(sites) -> None:
    a, b, _ = sites
    with pytest.raises(EnvelopeError, match="unknown or revoked"):
        b.open(a.seal("B", b.keys, {}, b"x"), {}.get)


def test_a_stale_control_message_is_refused(sites, monkeypatch) -> None:
    a, b, _ = sites
    sealed = a.seal("B", b.keys, {}, b"x")
    import isthmus.relay.crypto as crypto

    later = crypto.time.time() + 3600
    monkeypatch.setattr(crypto.time, "time", lambda: later)
    with pytest.raises(EnvelopeError, match="stale"):
        b.open(sealed, {"A": a.keys}.get)
    assert b.open(sealed, {"A": a.keys}.get, max_age=None).body == b"x"


def test_keys_survive_a_save_and_load_with_private_permissions(sites, tmp_path) -> None:
    a, b, _ = sites
    path = tmp_path / "relay" / "site.json"
    a.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = SiteIdentity.load(path)
    assert again.keys == a.keys and again.keys.fingerprint == a.keys.fingerprint
    assert b.open(again.seal("B", b.keys, {}, b"y"), {"A": a.keys}.get).body == b"y"


def test_the_header_is_readable_without_keys(sites) -> None:
    a, b, _ = sites
    assert peek_header(a.seal("B", b.keys, {"kind": "open"}, b""))["kind"] == "open"
    with pytest.raises(EnvelopeError):
        peek_header(b"not an envelope at all, not at all, no, not at all, no no no no no")


def test_decompress_refuses_more_than_the_declared_size() -> None:
    data = os.urandom(100) * 1000
    assert decompress(compress(data), len(data)) == data
    with pytest.raises(EnvelopeError):
        decompress(compress(data), len(data) - 1)
