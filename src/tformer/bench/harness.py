"""`tformer bench`'s engine: run the chosen suites and return one report (rows, environment, notes)."""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from tformer.bench.hf_peers import transformers_version
from tformer.bench.measure import Measurement, measure_matmul_peak, run_group
from tformer.bench.profiling import GroupProfiler
from tformer.bench.report import group_rows, rows_as_dicts
from tformer.bench.suites import SIZES, SUITES, Group, Settings, groups

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Square matmul sizes tried for the peak: around the device's best rate, each well under a second.
PEAK_MATMUL_SIZES = {"cuda": (4096, 8192, 16384), "cpu": (256, 512, 1024)}


@dataclass(frozen=True)
class BenchOptions:
    device: str  # "cpu", "cuda" or "cuda:N"
    suites: tuple[str, ...]
    steps: int
    warmup: int
    size: str  # a key of SIZES
    dtype: str  # a key of DTYPES
    compile: bool
    static_cache: bool
    seed: int
    profile_dir: Path | None = None  # profile every contender after the timing, write tables and traces here
    profile_steps: int = 3

    def __post_init__(self) -> None:
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown or not self.suites:
            raise ValueError(f"unknown suite(s) {unknown or self.suites} (valid: {', '.join(SUITES)})")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r} (valid: {', '.join(SIZES)})")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r} (valid: {', '.join(DTYPES)})")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available (use --device cpu)")
        if self.profile_steps < 1:
            raise ValueError(f"profile steps must be >= 1, got {self.profile_steps}")
        if self.profile_dir is not None and self.profile_dir.exists() and not self.profile_dir.is_dir():
            raise ValueError(f"profile directory {str(self.profile_dir)!r} exists and is not a directory")


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def environment(device: torch.device) -> dict:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "transformers_version": transformers_version(),
        "python_version": platform.python_version(),
    }


def run_bench(options: BenchOptions, *, log: Callable[[str], object] = print) -> dict:
    """Time every suite in `options.suites`; return the report (see `format_table` for its printed form)."""
    device = torch.device(options.device)
    dtype = DTYPES[options.dtype]
    env = environment(device)
    with_hf = env["transformers_version"] is not None
    notes = [] if with_hf else ["transformers is not installed: the HuggingFace peers were skipped"]
    if not options.compile:
        notes.append("torch.compile'd rows skipped (default off on CPU; --compile forces them)")
    peak_sizes = PEAK_MATMUL_SIZES[device.type]
    peak_before = measure_matmul_peak(device, dtype, sizes=peak_sizes)
    settings = Settings(
        device=device,
        dtype=dtype,
        sizes=SIZES[options.size],
        compile=options.compile,
        static_cache=options.static_cache,
        with_hf=with_hf,
        seed=options.seed,
    )
    profiler = None
    if options.profile_dir is not None:
        profiler = GroupProfiler(options.profile_dir, device=device, steps=options.profile_steps)
    measured = _time_groups(options, settings, profiler=profiler, log=log)
    # Measured again after the models: on a shared machine, load at the start alone would lower the peak.
    peak_after = measure_matmul_peak(device, dtype, sizes=peak_sizes)
    peak_flops, peak_size = max(peak_before, peak_after)
    rows = []
    for group, measurements in measured:
        rows += group_rows(group.suite, group.case, measurements, peak_flops=peak_flops)
        notes += group.notes
    if profiler is not None:
        profiler.write_summary()
    return {
        "benchmark": "tformer bench",
        "settings": {
            **{k: _json_value(v) for k, v in vars(options).items()},
            "sizes": dataclasses.asdict(SIZES[options.size]),
        },
        "environment": env,
        "peak_flops": peak_flops,
        "peak_matmul": f"{options.dtype} [{peak_size}, {peak_size}] @ [{peak_size}, {peak_size}], the best of 5 "
        f"products at each of n = {', '.join(map(str, peak_sizes))}, before and after the models",
        "peak_flops_before_after": [peak_before[0], peak_after[0]],
        "rows": rows_as_dicts(rows),
        "notes": notes,
    }


def _time_groups(
    options: BenchOptions, settings: Settings, *, profiler: GroupProfiler | None, log: Callable[[str], object]
) -> list[tuple[Group, list[Measurement]]]:
    """Every comparison group of the chosen suites, timed (and profiled after its timing, with a profiler)."""
    measured = []
    for suite in options.suites:
        for group in groups(suite, settings):
            log(f"timing {group.suite} / {group.case} ...")
            after_timing = None
            if profiler is not None:
                after_timing = functools.partial(profiler.profile_group, group.suite, group.case)
            measurements = run_group(
                group.builders,
                device=settings.device,
                steps=options.steps,
                warmup=options.warmup,
                after_timing=after_timing,
            )
            measured.append((group, measurements))
            gc.collect()  # the group's models went with run_group's contenders: free them before the next
            if settings.device.type == "cuda":
                torch.cuda.empty_cache()
    return measured


def _json_value(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path) else value
