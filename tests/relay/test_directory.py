"""The directory as a router sees it (relay/directory.py): exports, imports, pinned keys."""

from __future__ import annotations

from pathlib import Path

from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Directory, Export, KnownKeys, SiteEntry


def entry(identity: SiteIdentity, *exports: Export, revoked: bool = False) -> SiteEntry:
    return SiteEntry(identity.name, identity.keys, revoked=revoked, exports=exports)


def test_imports_are_the_other_sites_exports_offered_to_this_site() -> None:
    a, b, c = (SiteIdentity.create(n) for n in "ABC")
    directory = Directory("A")
    directory.update(entry(a, Export("PACSA", "A")))
    directory.update(entry(b, Export("PACSB", "B"), Export("ONLYC", "B", sites=frozenset({"C"}))))
    directory.update(entry(c, Export("PACSC", "C")))
    assert [e.aet for e in directory.imports()] == ["PACSB", "PACSC"]
    assert directory.export("PACSB") is not None and directory.export("PACSA") is None


def test_a_revoked_site_has_no_imports_and_no_trusted_keys() -> None:
    b = SiteIdentity.create("B")
    directory = Directory("A")
    directory.update(entry(b, Export("PACSB", "B"), revoked=True))
    assert directory.imports() == [] and directory.keys_of("B") is None


def test_changed_keys_of_a_known_site_are_refused_until_accepted(tmp_path: Path) -> None:
    known = KnownKeys(tmp_path / "known_sites.json")
    directory = Directory("A", known)
    seen: list[str] = []
    directory.on_change(seen.append)
    first, second = SiteIdentity.create("B"), SiteIdentity.create("B")
    directory.update(entry(first))
    assert directory.keys_of("B") == first.keys  # pinned on first sight
    directory.update(entry(second))  # the bridge (or someone) swapped B's keys
    assert directory.keys_of("B") is None
    assert known.changed["B"] == second.keys.fingerprint
    again = KnownKeys(tmp_path / "known_sites.json")  # the pin survives a restart
    assert not again.trusts("B", second.keys) and again.trusts("B", first.keys)
    known.accept("B", second.keys.fingerprint)
    assert directory.keys_of("B") == second.keys and "B" not in known.changed
    assert seen == ["B", "B"]


def test_an_export_permits_only_its_services_and_sites() -> None:
    export = Export("PACSB", "B", services=frozenset({"find"}), sites=frozenset({"A"}))
    assert export.permits("A", "find")
    assert not export.permits("A", "move") and not export.permits("C", "find")
