"""The bridge's database (relay/bridge_state.py) on SQLite and on PostgreSQL: accounts,
one-time secrets, exports unique across the federation, several processes at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from isthmus.relay.bridge_state import BridgeState, Refused
from isthmus.relay.crypto import SiteIdentity
from isthmus.relay.directory import Export


@pytest.fixture(name="state")
def state_fixture(index_url: str):
    state = BridgeState(index_url)
    try:
        yield state
    finally:
        state.close()


def enrolled(state: BridgeState, name: str) -> SiteIdentity:
    identity = SiteIdentity.create(name)
    state.enrol(name, state.add_site(name), identity.keys)
    return identity


def test_only_the_hash_of_a_secret_is_kept(state: BridgeState) -> None:
    secret = state.add_site("A")
    with state.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT secret_hash FROM relay_sites").scalar()
    assert secret not in str(stored) and len(str(stored)) == 64


def test_a_site_name_is_unique_and_well_formed(state: BridgeState) -> None:
    state.add_site("A")
    with pytest.raises(Refused, match="already exists") as refused:
        state.add_site("A")
    assert refused.value.status == 409
    for bad in ("", "a.b", "a b", "x" * 65, "a>"):
        with pytest.raises(Refused, match="not valid"):
            state.add_site(bad)


def test_entries_list_enrolled_sites_only_with_their_exports(state: BridgeState) -> None:
    a = enrolled(state, "A")
    state.add_site("PENDING")
    state.set_exports("A", [Export("PACSA", "A").to_json()])
    entries = state.entries()
    assert list(entries) == ["A"]
    assert entries["A"].keys == a.keys and [e.aet for e in entries["A"].exports] == ["PACSA"]


def test_a_revoked_site_keeps_its_ae_titles_taken(state: BridgeState) -> None:
    enrolled(state, "A"), enrolled(state, "B")
    state.set_exports("A", [{"aet": "PACS"}])
    assert state.revoke("A") and state.entries()["A"].revoked
    with pytest.raises(Refused, match="exported by site 'A'"):
        state.set_exports("B", [{"aet": "PACS"}])
    assert state.revoke("NOBODY") is False


def test_two_processes_racing_for_one_ae_title_give_it_to_one(index_url: str) -> None:
    first, second = BridgeState(index_url), BridgeState(index_url)  # two bridge processes
    try:
        enrolled(first, "A"), enrolled(first, "B")

        def claim(args: tuple[BridgeState, str]) -> str:
            state, site = args
            try:
                state.set_exports(site, [{"aet": "SHARED"}])
                return site
            except Refused as exc:
                assert exc.status == 409
                return ""

        with ThreadPoolExecutor(2) as pool:
            winners = [w for w in pool.map(claim, [(first, "A"), (second, "B")]) if w]
        assert len(winners) == 1
        owners = {n: [x.aet for x in e.exports] for n, e in second.entries().items()}
        assert owners[winners[0]] == ["SHARED"] and sum(map(len, owners.values())) == 1
    finally:
        first.close()
        second.close()


def test_two_enrolments_racing_with_one_secret_register_one_set_of_keys(index_url: str) -> None:
    first, second = BridgeState(index_url), BridgeState(index_url)
    try:
        secret = first.add_site("A")
        candidates = [SiteIdentity.create("A").keys for _ in range(2)]

        def enrol(args: tuple[BridgeState, object]) -> object:
            state, keys = args
            try:
                return state.enrol("A", secret, keys).keys  # type: ignore[arg-type]
            except Refused as exc:
                assert exc.status == 403
                return None

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(enrol, zip((first, second), candidates, strict=True)))
        winners = [keys for keys in results if keys is not None]
        assert len(winners) == 1
        assert first.entries()["A"].keys == winners[0]
    finally:
        first.close()
        second.close()
