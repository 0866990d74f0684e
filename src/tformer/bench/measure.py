"""Timing, FLOP counting, memory and matrix-multiply peak: the measuring instruments of `tformer bench`.

A comparison group's contenders are built one after the other, then timed in interleaved rounds (A B C A B C
...), so that a burst of load from another process on a shared machine hits them all alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flops(grad_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


# torch's FLOP counter knows the CUDA attention kernels but not the CPU one, which SDPA picks on CPU: without
# these, attention would count as free on CPU and MFU would not mean the same on both devices. The counter
# calls them with the shapes of the kernel's arguments, which begin like those of the CUDA kernels.
_CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


@dataclass
class Contender:
    """One implementation in one comparison: `step` does one timed unit of work (a training step, a batch
    translation). `eager_step` does the same work without torch.compile, for the FLOP counter (default: step)."""

    name: str
    is_tformer: bool
    step: Callable[[], object]
    tokens_per_step: int
    eager_step: Callable[[], object] | None = None
    compiled: bool = False


@dataclass
class Measurement:
    name: str
    is_tformer: bool
    tokens_per_step: int
    flops_per_step: float  # counted by torch.utils.flop_counter on one eager step
    times_s: list[float] = field(default_factory=list)
    persistent_bytes: int | None = None  # CUDA: weights, optimizer state, whatever stays between steps
    step_peak_bytes: int = 0  # CUDA: the most a step allocated on top of what was there before it

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def peak_memory_bytes(self) -> int | None:
        """What torch.cuda.max_memory_allocated would report for this contender alone (None on CPU)."""
        if self.persistent_bytes is None:
            return None
        return self.persistent_bytes + self.step_peak_bytes


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so that a clock read after this covers it; nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(work: Callable[[], object]) -> float:
    """FLOPs of `work()` as torch.utils.flop_counter counts them: matrix products and attention (causal
    attention counted in full, as the counter and nanoGPT's MFU do)."""
    with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS) as counter:
        work()
    return float(counter.get_total_flops())


def measure_matmul_peak(
    device: torch.device, dtype: torch.dtype, *, sizes: tuple[int, ...], repeats: int = 5
) -> tuple[float, int]:
    """(FLOP/s, n) of the fastest of `repeats` timed [n, n] @ [n, n] products in `dtype` on `device`, over the
    sizes n in `sizes`.

    This is the denominator of MFU: what this device reaches on the friendliest workload today, measured in
    the same process as the models instead of taken from a datasheet. Several sizes, because the best one
    depends on the caches (on a CPU core a 512 product ran 1.5x faster than a 1024 one).
    """
    best_flops, best_size = 0.0, sizes[0]
    g = torch.Generator(device=device).manual_seed(0)
    for size in sizes:
        a = torch.randn(size, size, device=device, dtype=dtype, generator=g)
        b = torch.randn(size, size, device=device, dtype=dtype, generator=g)
        products = 10 if device.type == "cuda" else 1  # CUDA: enough work per timing to hide launch latency
        a @ b  # first call: kernel selection, thread-pool start-up
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(products):
                a @ b
            synchronize(device)
            flops = 2.0 * size**3 * products / (time.perf_counter() - start)
            if flops > best_flops:
                best_flops, best_size = flops, size
    return best_flops, best_size


def _allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def _timed_step(contender: Contender, measurement: Measurement, device: torch.device) -> float:
    synchronize(device)
    if device.type == "cuda":
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    contender.step()
    synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        step_peak = torch.cuda.max_memory_allocated(device) - before
        measurement.step_peak_bytes = max(measurement.step_peak_bytes, step_peak)
    return seconds


def run_group(
    builders: list[Callable[[], Contender]],
    *,
    device: torch.device,
    steps: int,
    warmup: int,
    after_timing: Callable[[list[Contender]], object] | None = None,
) -> list[Measurement]:
    """Build, count and warm up each contender in turn, then time `steps` interleaved rounds.

    `after_timing(contenders)`, if given, runs once the timing is over, while the contenders still exist
    (`tformer bench --profile` profiles them there, where the profiler cannot slow the timed steps).

    Memory on CUDA: the contenders of a group stay resident together, so each one's peak is its own
    persistent memory (allocated while it was built and warmed up, before the next was built) plus the most
    any of its steps allocated on top of what was there when the step began.
    """
    contenders, measurements = [], []
    for build in builders:
        synchronize(device)
        before = _allocated(device)
        contender = build()
        flops = count_flops(contender.eager_step or contender.step)
        measurement = Measurement(contender.name, contender.is_tformer, contender.tokens_per_step, flops)
        # A compiled model compiles on its first call: never time that one.
        for _ in range(max(warmup, 1 if contender.compiled else 0)):
            contender.step()
        synchronize(device)
        if device.type == "cuda":
            measurement.persistent_bytes = _allocated(device) - before
        contenders.append(contender)
        measurements.append(measurement)
    for _ in range(steps):
        for contender, measurement in zip(contenders, measurements, strict=True):
            measurement.times_s.append(_timed_step(contender, measurement, device))
    if after_timing is not None:
        after_timing(contenders)
    return measurements


def percentile_ms(times_s: list[float], q: int) -> float:
    """The q-th percentile (q in 1..99) of the step times, in milliseconds (the only value for one step)."""
    ms = [1000.0 * t for t in times_s]
    if len(ms) == 1:
        return ms[0]
    return statistics.quantiles(ms, n=100, method="inclusive")[q - 1]
