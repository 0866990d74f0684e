"""Rows, the printed table and the JSON report of `tformer bench`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tformer.bench.measure import Measurement, percentile_ms


@dataclass
class Row:
    suite: str
    case: str
    implementation: str
    steps_per_s: float  # training steps, or whole batch generations, per second (from the median step)
    tokens_per_s: float  # training: target tokens (padding excluded); generation: new tokens of all sentences
    flops_per_step: float
    mfu: float  # flops_per_step * steps_per_s / the matmul peak measured in the same run
    peak_memory_bytes: int | None  # CUDA only
    median_ms: float
    p10_ms: float
    p90_ms: float
    step_times_ms: list[float]
    # tformer's tokens/s (peak memory) over this row's; None on tformer's own row
    tformer_speed_ratio: float | None = None
    tformer_memory_ratio: float | None = None


def group_rows(suite: str, case: str, measurements: list[Measurement], *, peak_flops: float) -> list[Row]:
    """One row per contender; each peer's row gets tformer's ratios to it."""
    rows = []
    for m in measurements:
        steps_per_s = 1.0 / m.median_s
        rows.append(
            Row(
                suite=suite,
                case=case,
                implementation=m.name,
                steps_per_s=steps_per_s,
                tokens_per_s=m.tokens_per_step * steps_per_s,
                flops_per_step=m.flops_per_step,
                mfu=m.flops_per_step * steps_per_s / peak_flops,
                peak_memory_bytes=m.peak_memory_bytes,
                median_ms=1000.0 * m.median_s,
                p10_ms=percentile_ms(m.times_s, 10),
                p90_ms=percentile_ms(m.times_s, 90),
                step_times_ms=[1000.0 * t for t in m.times_s],
            )
        )
    ours = [row for row, m in zip(rows, measurements, strict=True) if m.is_tformer]
    assert len(ours) == 1, f"a comparison group has exactly one tformer contender, got {len(ours)}"
    for row, m in zip(rows, measurements, strict=True):
        if not m.is_tformer:
            row.tformer_speed_ratio = ours[0].tokens_per_s / row.tokens_per_s
            if row.peak_memory_bytes and ours[0].peak_memory_bytes is not None:
                row.tformer_memory_ratio = ours[0].peak_memory_bytes / row.peak_memory_bytes
    return rows


def _si(value: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f}{prefix}"
    return f"{value:.1f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _memory(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


COLUMNS = (
    ("suite", "<", 14),
    ("case", "<", 15),
    ("implementation", "<", 30),
    ("steps/s", ">", 9),
    ("tokens/s", ">", 10),
    ("MFU", ">", 7),
    ("peak mem", ">", 11),
    ("tformer speed", ">", 14),
    ("tformer mem", ">", 12),
)


def format_table(report: dict) -> str:
    """The one table: a header naming device, peak and versions, a row per implementation, then the notes."""
    env = report["environment"]
    lines = [
        f"tformer bench on {env['device_name']} ({report['settings']['device']}, {report['settings']['dtype']}, "
        f"{env['threads']} threads), torch {env['torch_version']}, transformers "
        f"{env['transformers_version'] or 'not installed'}, {env['date']}",
        f"matmul peak measured now: {_si(report['peak_flops'])}FLOP/s ({report['peak_matmul']}); "
        f"median of {report['settings']['steps']} timed steps after {report['settings']['warmup']} warm-up",
        "",
    ]
    rows = [
        (
            r["suite"],
            r["case"],
            r["implementation"],
            f"{r['steps_per_s']:.2f}",
            _si(r["tokens_per_s"]),
            f"{100 * r['mfu']:.1f}%",
            _memory(r["peak_memory_bytes"]),
            _ratio(r["tformer_speed_ratio"]),
            _ratio(r["tformer_memory_ratio"]),
        )
        for r in report["rows"]
    ]
    # A column is as wide as its default or its longest cell plus a space, whichever is wider.
    widths = [max([width] + [len(row[i]) + 1 for row in rows]) for i, (_, _, width) in enumerate(COLUMNS)]
    layout = [(align, width) for (_, align, _), width in zip(COLUMNS, widths, strict=True)]
    for cells in [tuple(name for name, _, _ in COLUMNS), *rows]:
        lines.append("".join(f"{c:{align}{width}}" for c, (align, width) in zip(cells, layout, strict=True)))
    lines += [
        "",
        "tformer speed = tformer tokens/s / this row's; tformer mem = tformer peak memory / this row's",
    ]
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(row) for row in rows]
