"""The names the relay puts on the wire: sites, transfers, the objects of a transfer.

A site name appears in NATS subjects (`relay.<site>.open`), in KV keys of the
directory and in transfer ids (`<source>.<destination>.<id>`, docs/relay.md,
"Transfers"), so it may not contain a dot, a space or a NATS wildcard.  Object names
become the last part of an object key in the bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SITE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TRANSFER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
OBJECT_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


class BadName(ValueError):
    """A site, transfer or object name that the relay cannot carry."""


def check_site_name(name: str) -> str:
    """A valid site name: 1-64 of A-Z a-z 0-9 _ - (no dot: names are parts of subjects)."""
    if not isinstance(name, str) or not SITE_NAME.fullmatch(name):
        raise BadName(f"site name {name!r} is not valid (1-64 of A-Z a-z 0-9 _ -)")
    return name


def check_object_name(name: str) -> str:
    """A valid object name within a transfer: 1-128 of A-Z a-z 0-9 . _ -, not . or .."""
    if not isinstance(name, str) or not OBJECT_NAME.fullmatch(name) or name in {".", ".."}:
        raise BadName(f"object name {name!r} is not valid (1-128 of A-Z a-z 0-9 . _ -)")
    return name


@dataclass(frozen=True)
class TransferId:
    """`<source>.<destination>.<id>`: who puts the objects, who fetches them."""

    source: str
    destination: str
    id: str

    @classmethod
    def parse(cls, text: str) -> TransferId:
        parts = text.split(".") if isinstance(text, str) else []
        if len(parts) != 3 or not TRANSFER_ID.fullmatch(parts[2]):
            raise BadName(f"transfer {text!r} is not <source>.<destination>.<id>")
        return cls(check_site_name(parts[0]), check_site_name(parts[1]), parts[2])

    def __str__(self) -> str:
        return f"{self.source}.{self.destination}.{self.id}"
