"""Federated links and the records behind them (docs/p2p.md, "Federated links")."""

from __future__ import annotations

from pathlib import Path

from isthmus.archive import Archive
from isthmus.p2p.signalling import link_site, link_url, parse_link, relay_proof


def test_a_federated_link_names_the_sharing_site_before_the_secret() -> None:
    link = link_url("http://node.a:8042/", "ID", "SECRET", "HOSPITAL-A")
    assert link == "http://node.a:8042/share/ID?site=HOSPITAL-A#SECRET"
    assert parse_link(link) == ("http://node.a:8042", "ID", "SECRET")
    assert link_site(link) == "HOSPITAL-A"
    assert link_site(link_url("http://node.a:8042", "ID", "SECRET")) is None


def test_the_relay_proof_binds_the_requesting_site_and_destination() -> None:
    proof = relay_proof("SECRET", "ID", "B", "ISTHMUSB")
    assert proof != relay_proof("SECRET", "ID", "C", "ISTHMUSB")
    assert proof != relay_proof("SECRET", "ID", "B", "STOREB")
    assert proof != relay_proof("OTHER", "ID", "B", "ISTHMUSB")


def test_only_shares_made_for_the_federation_are_federated(tmp_path: Path) -> None:
    archive = Archive(f"sqlite:///{tmp_path / 'i.sqlite'}", f"file://{tmp_path / 'blobs'}")
    try:
        local = archive.shares.create("1.2.3")
        shared = archive.shares.create("1.2.3", federation=True)
        assert [s.link_id for s in archive.shares.federated()] == [shared.link_id]
        found = archive.shares.get(shared.link_id)
        assert found is not None and found.federation
        assert archive.shares.get(local.link_id).federation is False  # type: ignore[union-attr]
    finally:
        archive.close()
