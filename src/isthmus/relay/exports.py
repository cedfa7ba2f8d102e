"""What a site offers the federation: its exports, from the settings (docs/relay.md).

`--export PACSB@10.0.0.5:104` offers a device of the site; `--export ISTHMUS` (the
node's own AE title alone) offers this archive, reached on its own DICOM port.  Without
narrowing an export is offered to every site for every service; the TOML table
`relay_export_rules.<AET>` narrows it (`services`, `sites`).  The directory publishes
the titles and their rules; the addresses stay at the site.
"""

from __future__ import annotations

from isthmus.config import ConfigError, Peer, Settings, check_aet
from isthmus.relay.directory import ANY_SITE, SERVICES, Export


def export_addresses(settings: Settings, dicom_port: int) -> dict[str, tuple[str, int]]:
    """Exported AE title → where the far side's agent calls it (host, port)."""
    out: dict[str, tuple[str, int]] = {}
    for spec in settings.relay_exports:
        if "@" in spec:
            peer = Peer.parse(spec)
            out[peer.aet] = (peer.host, peer.port)
        else:
            aet = check_aet(spec)
            if aet != settings.aet:
                raise ConfigError(
                    f"--export {aet}: an AE title alone exports this archive ({settings.aet}); "
                    "a device of the site is AET@HOST:PORT"
                )
            out[aet] = (_reachable(settings.host), dicom_port)
    return out


def site_exports(settings: Settings, site: str) -> list[Export]:
    """The exports as the directory shows them, narrowed by `relay_export_rules`."""
    exports = []
    for aet in export_addresses(settings, settings.dicom_port):
        rule = settings.relay_export_rules.get(aet, {})
        exports.append(
            Export(
                aet=aet,
                site=site,
                services=frozenset(rule.get("services", SERVICES)),
                sites=frozenset(rule.get("sites", [ANY_SITE])),
            )
        )
    return exports


def _reachable(host: str) -> str:
    """The address to call our own port on: a wildcard bind is reached on loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
