"""`isthmus audit`: the audit log searched from the command line, newest first.

Reads the log file itself (logfile.py), so it works while the server runs and when it
does not.  Whoever can read the data folder can read the audit trail: the file is
created 0600, for the account that runs Isthmus.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TextIO

from isthmus.audit.logfile import Filter


def parse_time(text: str | None, end: bool) -> datetime | None:
    """An ISO 8601 date or date-time; a bare date as an end means the end of that day."""
    if not text:
        return None
    when = datetime.fromisoformat(text)  # ValueError: the caller reports it
    if end and len(text) == 10:
        when = when.replace(hour=23, minute=59, second=59, microsecond=999_999)
    return when


def make_filter(
    start: str | None,
    end: str | None,
    user: str | None,
    patient: str | None,
    study: str | None,
    event: str | None,
    limit: int,
) -> Filter:
    return Filter(
        start=parse_time(start, end=False),
        end=parse_time(end, end=True),
        user=user,
        patient=patient,
        study=study,
        event=event,
        limit=limit,
    )


def write(entries: Iterable[dict[str, Any]], out: TextIO, as_json: bool, xml: bool) -> int:
    """Print the entries (one line each, JSON lines, or each message's XML); returns how many."""
    count = 0
    for entry in entries:
        count += 1
        if as_json:
            print(json.dumps(entry, ensure_ascii=False), file=out)
        elif xml:
            print(entry.get("xml", ""), file=out)
        else:
            patients = ",".join(
                f"{p.get('id', '')}^{p.get('name', '')}" for p in entry.get("patients", ())
            )
            print(
                "  ".join(
                    (
                        str(entry.get("time", "")),
                        f"{entry.get('event', '')}/{entry.get('action', '')}",
                        f"outcome={entry.get('outcome', '')}",
                        f"user={entry.get('user', '')}",
                        f"source={entry.get('source', '')}",
                        f"patients={patients}",
                        f"studies={','.join(entry.get('studies', ()))}",
                    )
                ),
                file=out,
            )
    return count
