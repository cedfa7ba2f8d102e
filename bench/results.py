"""What a scenario measured, and how it is printed and saved.

Ratios matter, not absolute times: the machine is shared and noisy, so each figure
is the median of several runs and every system runs in the same session.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Measurement:
    """Wall-clock seconds of repeated runs of one system in one scenario."""

    system: str
    seconds: list[float] = field(default_factory=list)
    # bytes moved per run, when a throughput makes sense (MB/s = bytes / median / 1e6)
    size_bytes: int | None = None
    # CPU seconds the server process used per run (user + system), when known
    server_cpu: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def throughput(self) -> float | None:
        """MB/s (10^6 bytes per second) at the median time."""
        if self.size_bytes and self.median:
            return self.size_bytes / self.median / 1e6
        return None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["median"] = self.median
        out["throughput_MBps"] = self.throughput
        if self.server_cpu:
            out["server_cpu_median"] = statistics.median(self.server_cpu)
        return out


@dataclass
class Scenario:
    """One row of the results table: Isthmus against the others, with a target."""

    name: str
    title: str
    target: str = ""
    measurements: dict[str, Measurement] = field(default_factory=dict)
    # label → (numerator system, denominator system, target ratio or None: lower is better)
    ratios: dict[str, tuple[str, str, float | None]] = field(default_factory=dict)
    status: str = "ok"  # ok | skipped | failed
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # A line for the Reference column beside the other systems (e.g. the ingest row's
    # CPU budget at the target).
    remark: str = ""

    def measure(self, system: str, **kwargs: Any) -> Measurement:
        if system not in self.measurements:
            self.measurements[system] = Measurement(system, **kwargs)
        return self.measurements[system]

    def ratio(self, label: str) -> float | None:
        num, den, _ = self.ratios[label]
        a, b = (self.measurements.get(num), self.measurements.get(den))
        if a is None or b is None or not a.median or not b.median:
            return None
        return a.median / b.median

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "target": self.target,
            "status": self.status,
            "note": self.note,
            "details": self.details,
            "measurements": {k: m.to_json() for k, m in self.measurements.items()},
            "ratios": {
                label: {"value": self.ratio(label), "numerator": n, "denominator": d, "target": t}
                for label, (n, d, t) in self.ratios.items()
            },
        }


def _seconds(m: Measurement | None) -> str:
    if m is None or m.median is None:
        return "-"
    text = f"{m.median * 1000:.0f} ms" if m.median < 1 else f"{m.median:.2f} s"
    extra = []
    if m.throughput:
        extra.append(f"{m.throughput:.0f} MB/s")
    if m.server_cpu:
        extra.append(f"CPU {statistics.median(m.server_cpu):.2f} s")
    return text + (f" ({', '.join(extra)})" if extra else "")


def _ratios(s: Scenario) -> str:
    parts = []
    for label, (_, _, target) in s.ratios.items():
        value = s.ratio(label)
        if value is None:
            continue
        mark = ""
        if target is not None:
            mark = " ✓" if value <= target else f" ✗ (target ≤ {target:g})"
        parts.append(f"{label} {value:.2f}{mark}")
    return "; ".join(parts) or "-"


def table_rows(scenarios: list[Scenario]) -> list[list[str]]:
    """Rows: scenario, Isthmus, Orthanc, reference, ratios, status."""
    rows = []
    for s in scenarios:
        refs = [m for k, m in s.measurements.items() if k not in ("isthmus", "orthanc")]
        entries = [f"{m.system} {_seconds(m)}" for m in refs]
        if s.remark:
            entries.append(s.remark)
        ref = "; ".join(entries) or "-"
        status = s.status if s.status == "ok" else f"{s.status}: {s.note}"
        rows.append(
            [
                s.title,
                _seconds(s.measurements.get("isthmus")),
                _seconds(s.measurements.get("orthanc")),
                ref,
                _ratios(s),
                status,
            ]
        )
    return rows


HEADER = ["Scenario", "Isthmus", "Orthanc", "Reference", "Ratios (lower is better)", "Status"]


def markdown(scenarios: list[Scenario]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in table_rows(scenarios):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"


def text_table(scenarios: list[Scenario]) -> str:
    rows = [HEADER] + table_rows(scenarios)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def save(
    scenarios: list[Scenario],
    out_dir: Path,
    machine: dict[str, Any],
    command: str,
    setup: dict[str, float] | None = None,
) -> None:
    """Write results.json (everything) and results.md (the table) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": machine,
        "command": command,
        "scenarios": [s.to_json() for s in scenarios],
        "setup_seconds": setup or {},
    }
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    header = (
        f"Machine: {machine.get('cpu')}, {machine.get('nproc')} cores, load average "
        f"{machine.get('load_average_start_end')} (start, end); {machine.get('date')}; "
        f"Isthmus {machine.get('isthmus_commit')} (+{machine.get('isthmus_src_files_changed')} "
        f"changed files under src/); command `{command}`\n\n"
    )
    (out_dir / "results.md").write_text(header + markdown(scenarios))
