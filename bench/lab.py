"""The bench session: data sets, fresh servers, and loaded archives shared by scenarios.

A scenario asks for what it needs (`lab.archive("orthanc", "main")`) and the lab
builds it once: scenarios can run alone (`--only find`) or in sequence, reusing the
archive the ingest scenario filled.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import data, dimse
from bench.procs import CommandFailed, Server, StoreSCP
from bench.systems import SYSTEMS
from isthmus.testing.net import free_port

# What each loaded archive holds: "main" = small (10,000 instances) + ct (271 CT);
# "qido" = 10,000 one-instance studies.
ARCHIVES = {"main": ("small", "ct"), "qido": ("qido",)}


@dataclass
class Loaded:
    server: Server
    datasets: set[str] = field(default_factory=set)
    load_seconds: dict[str, float] = field(default_factory=dict)


class Lab:
    def __init__(
        self, out_dir: Path, repeat: int = 3, profile: bool = False, keep: bool = False
    ) -> None:
        self.out_dir = out_dir
        self.data_dir = out_dir / "data"
        self.work = out_dir / "work"
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.repeat = repeat
        self.profile = profile
        self.keep = keep
        self._trash = self.work / "deleted"  # what rounds stored, deleted by close()
        self.move_port = free_port()
        self._data: dict[str, data.DataSet] = {}
        self._loaded: dict[tuple[str, str], Loaded] = {}
        self._serial = 0
        # untimed set-up loads, for the record: "system archive/dataset" → seconds
        self.setup_seconds: dict[str, float] = {}

    def data(self, name: str) -> data.DataSet:
        if name not in self._data:
            self._data[name] = data.load(name, self.data_dir)
        return self._data[name]

    def fresh(self, system: str, label: str = "", **options: Any) -> Server:
        """A new, not yet started server of `system` on an empty folder.

        `options` go to the server's constructor: DCMTK storescp's `extra=["-pdu",
        "131072"]` or `port=`, Isthmus's `durable=False`.
        """
        self._serial += 1
        workdir = self.work / f"{self._serial:03d}-{system}{'-' + label if label else ''}"
        if system == "storescp":
            return StoreSCP(workdir, **options)
        return SYSTEMS[system](workdir, self.move_port, **options)

    def discard(self, server: Server) -> None:
        """Stop `server` and put what it stored aside, deleted when the lab closes (its
        log stays).  Deleting between rounds would bias the next round: on a file
        system without a journal, ext4 skips every inode freed in the last seconds
        when it creates a file (`recently_deleted`), and creating files is what the
        next system's round does most (docs/performance.md, "Method")."""
        server.stop()
        if self.keep:
            return
        for path in server.workdir.iterdir():
            if path.is_dir():
                self._trash.mkdir(exist_ok=True)
                path.rename(self._trash / f"{len(list(self._trash.iterdir())):04d}")

    def adopt(self, system: str, archive: str, server: Server, loaded: dict[str, float]) -> None:
        """Keep a running server (filled by a scenario) for later scenarios."""
        entry = self._loaded.setdefault((system, archive), Loaded(server))
        entry.datasets.update(loaded)
        entry.load_seconds.update(loaded)

    def started(self, system: str, archive: str) -> Server:
        """The running server of `system` for `archive`, perhaps not filled yet."""
        key = (system, archive)
        if key not in self._loaded:
            self._loaded[key] = Loaded(self.fresh(system, archive).start())
        return self._loaded[key].server

    def archive(self, system: str, archive: str) -> Server:
        """A running server of `system` holding every data set of `archive`."""
        self.started(system, archive)
        entry = self._loaded[(system, archive)]
        for name in ARCHIVES[archive]:
            if name not in entry.datasets:
                entry.load_seconds[name] = self.load(entry.server, name)
                self.setup_seconds[f"{system} {archive}/{name}"] = round(
                    entry.load_seconds[name], 2
                )
                entry.datasets.add(name)
        return entry.server

    def load(self, server: Server, name: str) -> float:
        """Send data set `name` over DIMSE (the ingest method) and check it arrived."""
        ds = self.data(name)
        before = server.count()  # type: ignore[attr-defined]
        if name == "ct":
            seconds = dimse.storescu(server, ds.files())
        else:
            seconds = dimse.storescu_parallel(server, [ds.files(f) for f in ds.folders])
        stored = server.count() - before  # type: ignore[attr-defined]
        if stored != ds.count:
            raise CommandFailed(
                f"{server.name}: {stored} of {ds.count} instances of {name!r} stored"
            )
        return seconds

    def close(self) -> None:
        for entry in self._loaded.values():
            self.discard(entry.server)
        self._loaded.clear()
        shutil.rmtree(self._trash, ignore_errors=True)
