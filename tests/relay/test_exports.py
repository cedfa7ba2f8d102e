"""What a site offers the federation, from its settings (relay/exports.py, config.py)."""

from __future__ import annotations

import pytest

from isthmus.config import ConfigError, Settings, load
from isthmus.relay.exports import export_addresses, site_exports


def settings(**values: object) -> Settings:
    return load(env={}, **{"relay": "site.json", **values})


def test_a_device_is_exported_with_its_address_and_the_archive_by_its_title() -> None:
    s = settings(aet="ISTHMUS", host="0.0.0.0", relay_exports="PACSB@10.0.0.5:104,ISTHMUS")
    assert export_addresses(s, 11112) == {
        "PACSB": ("10.0.0.5", 104),
        "ISTHMUS": ("127.0.0.1", 11112),
    }


def test_an_export_goes_to_every_site_for_every_service_unless_narrowed() -> None:
    rules = {"PACSB": {"services": ["find", "move"], "sites": ["A"]}}
    s = settings(relay_exports=["PACSB@10.0.0.5:104", "ISTHMUS"], relay_export_rules=rules)
    by_title = {e.aet: e for e in site_exports(s, "B")}
    assert by_title["ISTHMUS"].permits("C", "store")
    assert by_title["PACSB"].permits("A", "move")
    assert not by_title["PACSB"].permits("A", "store")
    assert not by_title["PACSB"].permits("C", "find")


def test_another_title_alone_is_refused() -> None:
    with pytest.raises(ConfigError, match="AET@HOST:PORT"):
        export_addresses(settings(relay_exports=["OTHER"]), 11112)


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"relay": "", "relay_exports": ["PACSB@h:104"]}, "need relay"),
        ({"relay_exports": ["PACSB@h:104"], "relay_export_rules": {"PACSC": {}}}, "not in"),
        (
            {
                "relay_exports": ["PACSB@h:104"],
                "relay_export_rules": {"PACSB": {"services": ["x"]}},
            },
            "unknown services",
        ),
        ({"relay_timeout": 0}, "positive"),
    ],
)
def test_relay_settings_that_cannot_work_are_refused(values: dict, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        settings(**values)
