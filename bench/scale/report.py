"""The scale results as a Markdown table and as a chart (latency against archive size)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scale.queries import QIDO

KINDS = [*QIDO, "C-FIND study (findscu)"]


def markdown(results: dict[str, Any]) -> str:
    """p50 / p95 in ms per query kind, per index and size; Orthanc beside; ingest; size."""
    cols: list[tuple[str, dict[str, Any]]] = []
    for backend, run in results["isthmus"].items():
        for size, row in run.get("sizes", {}).items():
            cols.append((f"Isthmus {backend} {int(size):,}", row))
    for index, row in results["orthanc"].items():
        cols.append((f"Orthanc {index} {row.get('size', 0):,}", row))
    lines = [
        "| query (p50 / p95 ms) | " + " | ".join(name for name, _ in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for kind in KINDS:
        cells = []
        for _, row in cols:
            t = row.get(kind)
            cells.append(f"{t['p50_ms']:.1f} / {t['p95_ms']:.1f}" if t else "—")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append(
        "| ingest, instances/s (4 storescu) | "
        + " | ".join(str(row.get("ingest_per_s", "—")) for _, row in cols)
        + " |"
    )
    lines.append(
        "| index bytes per instance | "
        + " | ".join(str(row.get("index_bytes_per_instance", "—")) for _, row in cols)
        + " |"
    )
    empty = {b: r.get("ingest_empty_per_s") for b, r in results["isthmus"].items()}
    lines.append("")
    lines.append(f"Ingest into an empty archive, instances/s: {empty}.")
    lines.append("")
    lines.append("Orthanc p50 / Isthmus p50 at the same size, asked in turn (× faster):")
    lines.extend(_ratios(results))
    m = results.get("machine", {})
    lines.append("")
    lines.append(
        f"{m.get('cpu', '?')} × {m.get('nproc', '?')}, load {m.get('load_average_start_end')}, "
        f"{m.get('bench_seconds', '?')} s; `{results.get('command', '')}`"
    )
    return "\n".join(lines) + "\n"


def _ratios(results: dict[str, Any]) -> list[str]:
    out = []
    for index, orow in results["orthanc"].items():
        size = str(orow.get("size"))
        for backend, run in results["isthmus"].items():
            if backend != index:  # asked in turn only with the same kind of index
                continue
            irow = run.get("sizes", {}).get(size)
            if not irow:
                continue
            parts = []
            for kind in KINDS:
                if kind in irow and kind in orow and irow[kind]["p50_ms"]:
                    parts.append(f"{kind} {orow[kind]['p50_ms'] / irow[kind]['p50_ms']:.1f}×")
            out.append(
                f"- Orthanc {index} vs Isthmus {backend} at {int(size):,}: " + ", ".join(parts)
            )
    return out


def chart(results: dict[str, Any], path: Path) -> None:
    """One panel per query kind: p50 against archive size, each index a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(17, 7), sharex=True)
    for ax, kind in zip(axes.flat, KINDS, strict=False):
        for backend, run in results["isthmus"].items():
            sizes = sorted(int(s) for s in run.get("sizes", {}))
            values = [run["sizes"][str(s)].get(kind, {}).get("p50_ms") for s in sizes]
            style = "-o" if backend == "sqlite" else "--s"
            ax.plot(sizes, values, style, label=f"Isthmus {backend}")
        for index, row in results["orthanc"].items():
            if kind in row:
                marker = "^" if index == "sqlite" else "v"
                ax.plot(
                    [row["size"]], [row[kind]["p50_ms"]], marker, ms=9, label=f"Orthanc {index}"
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(kind, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.flat[len(KINDS) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("instances in the archive")
    fig.supylabel("p50 latency (ms)")
    fig.suptitle("Isthmus query latency against archive size (python -m bench.scale)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
