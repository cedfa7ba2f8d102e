"""Share links as `isthmus fetch` and the fetch endpoint read them (p2p/signalling.py)."""

from __future__ import annotations

import re

import pytest

from isthmus.p2p.signalling import parse_link


def test_a_share_link_is_its_base_id_and_secret() -> None:
    assert parse_link(" https://node.a:8443/pacs/share/ID#SECRET ") == (
        "https://node.a:8443/pacs",
        "ID",
        "SECRET",
    )
    assert parse_link("http://[::1]/share/ID#SECRET") == ("http://[::1]", "ID", "SECRET")


@pytest.mark.parametrize("port", ["notaport", "99999", "0", "+80", "-1"])
def test_a_link_whose_port_is_not_a_port_is_refused_naming_the_port_not_the_secret(
    port: str,
) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"port {port!r} is not a number from 1 to 65535")
    ) as e:
        parse_link(f"http://node.a:{port}/share/ID#SECRET")
    assert "SECRET" not in str(e.value)


def test_a_link_without_a_host_is_refused() -> None:
    with pytest.raises(ValueError, match="names no host"):
        parse_link("http://:8042/share/ID#SECRET")


@pytest.mark.parametrize(
    "link",
    [
        "ftp://node.a/share/ID#s3cr3t-xyz",
        "http://node.a/other/ID#s3cr3t-xyz",
        "http://node.a/share/#s3cr3t-xyz",
    ],
)
def test_a_link_that_is_not_a_share_link_is_refused_without_its_secret(link: str) -> None:
    with pytest.raises(ValueError, match="not a share link") as e:
        parse_link(link)
    assert "s3cr3t" not in str(e.value)
