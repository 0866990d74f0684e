"""`tformer bench --profile DIR`: where each contender's time goes, by torch.profiler.

A separate pass after a group has been timed (the profiler slows every op, so the timed steps never run under
it): each contender runs a few more steps under the profiler, and leaves in DIR an op table (`.txt`), a Chrome
trace (`.json`, for chrome://tracing or Perfetto), and its line in `summary.md`, which puts the top ops of a
group's contenders side by side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.autograd.profiler_util import FunctionEventAvg
from torch.profiler import ProfilerActivity, profile

from tformer.bench.measure import Contender, synchronize

TABLE_ROWS = 25
SUMMARY_OPS = 8


@dataclass(frozen=True)
class OpShare:
    name: str
    share: float  # percent of the contender's total self time
    ms_per_step: float


@dataclass(frozen=True)
class ContenderProfile:
    implementation: str
    ms_per_step: float  # the profiler's total self time (device time on CUDA) / the profiled steps
    top_ops: list[OpShare]  # by self time, largest first


def slug(text: str) -> str:
    """A file-name part: lowercase, runs of anything but [a-z0-9.-] turned into one '-'."""
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def profile_stem(suite: str, case: str, implementation: str) -> str:
    """E.g. generate__seq2seq-greedy__hf-marianmtmodel-generate."""
    return "__".join(slug(part) for part in (suite, case, implementation))


def _self_us(event: FunctionEventAvg, *, on_cuda: bool) -> float:
    """Where the time goes: the CPU's self time on CPU; on CUDA the GPU's, counted on the device's own events
    only. An op's self device time is its kernels' time, and the kernels are events of their own (as is the
    GPU mirror of a record_function range, which spans kernels): counting those too would count twice."""
    if not on_cuda:
        return event.self_cpu_time_total
    on_device = event.device_type != DeviceType.CPU and not getattr(event, "is_user_annotation", False)
    return event.self_device_time_total if on_device else 0.0


def summarise(
    implementation: str, events: Iterable[FunctionEventAvg], *, on_cuda: bool, steps: int
) -> ContenderProfile:
    """The total self time per step of one contender's profile (`key_averages()` over `steps` steps) and its
    top ops by self time."""
    self_us = [(event.key, _self_us(event, on_cuda=on_cuda)) for event in events]
    total_us = sum(us for _, us in self_us)
    top = sorted((item for item in self_us if item[1] > 0), key=lambda item: item[1], reverse=True)
    return ContenderProfile(
        implementation=implementation,
        ms_per_step=total_us / 1000.0 / steps,
        top_ops=[OpShare(name, 100.0 * us / total_us, us / 1000.0 / steps) for name, us in top[:SUMMARY_OPS]],
    )


class GroupProfiler:
    """Profiles the contenders of each group it is given and writes their files under `directory`; keeps
    each group's `ContenderProfile`s for `write_summary`."""

    def __init__(self, directory: Path, *, device: torch.device, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"profile steps must be >= 1, got {steps}")
        self.directory = directory
        self.device = device
        self.on_cuda = device.type == "cuda"
        self.steps = steps
        self.groups: list[tuple[str, str, list[ContenderProfile]]] = []
        # Made now, so that an unwritable directory fails before the timing rather than after it.
        directory.mkdir(parents=True, exist_ok=True)

    def profile_group(self, suite: str, case: str, contenders: list[Contender]) -> None:
        """Run `steps` more steps of each contender (already warmed up by the timing) under the profiler."""
        stems = [profile_stem(suite, case, c.name) for c in contenders]
        assert len(set(stems)) == len(stems), f"two contenders of {suite}/{case} share a file name: {stems}"
        profiles = []
        for contender, stem in zip(contenders, stems, strict=True):
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.on_cuda else [])
            with profile(activities=activities, record_shapes=True) as prof:
                for _ in range(self.steps):
                    contender.step()
                synchronize(self.device)  # the steps' queued kernels belong to this profile
            self._write_tables(prof, self.directory / f"{stem}.txt")
            prof.export_chrome_trace(str(self.directory / f"{stem}.json"))
            averages = prof.key_averages()
            profiles.append(summarise(contender.name, averages, on_cuda=self.on_cuda, steps=self.steps))
        self.groups.append((suite, case, profiles))

    def _write_tables(self, prof: profile, path: Path) -> None:
        # The table's sort keys keep torch's older "cuda" name for the GPU's self time.
        sort_by = "self_cuda_time_total" if self.on_cuda else "self_cpu_time_total"
        by_op = prof.key_averages().table(sort_by=sort_by, row_limit=TABLE_ROWS)
        by_shape = prof.key_averages(group_by_input_shape=True).table(sort_by=sort_by, row_limit=TABLE_ROWS)
        path.write_text(
            f"{self.steps} profiled steps, sorted by {sort_by}\n\n{by_op}\n\nby input shape:\n\n{by_shape}\n"
        )

    def write_summary(self) -> Path:
        """summary.md: a section per group, a line per contender with its top ops by self time."""
        clock = "GPU (CUDA kernels)" if self.on_cuda else "CPU"
        lines = [
            "# Where the time goes",
            "",
            f"torch.profiler, {self.steps} steps per implementation after the timed ones; self {clock} time "
            f"per op, its share of the implementation's total and ms per step. The top {SUMMARY_OPS} ops; "
            "tables and Chrome traces in the files named after each implementation.",
        ]
        for suite, case, profiles in self.groups:
            lines += ["", f"## {suite} / {case}", ""]
            for p in profiles:
                ops = ", ".join(f"`{op.name}` {op.share:.1f}% {op.ms_per_step:.3f} ms" for op in p.top_ops)
                lines.append(f"- **{p.implementation}** ({p.ms_per_step:.2f} ms/step): {ops}")
        path = self.directory / "summary.md"
        path.write_text("\n".join(lines) + "\n")
        return path
