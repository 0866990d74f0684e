"""`tformer bench --profile DIR`: a profile of every contender, taken after (never during) the timing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

from tformer.bench.measure import Contender, run_group
from tformer.bench.profiling import GroupProfiler, profile_stem, summarise
from tformer.cli.main import main

ARGV = ["bench", "--device", "cpu", "--size", "tiny", "--steps", "1", "--warmup", "0", "--threads", "1"]
ARGV += ["--suite", "generate"]


def _row_keys(report: dict) -> set[tuple[str, str, str]]:
    return {(r["suite"], r["case"], r["implementation"]) for r in report["rows"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict, object]:
    """(report with --profile, report without, the profile directory)."""
    tmp = tmp_path_factory.mktemp("bench_profile")
    profile_dir = tmp / "profiles"
    assert main([*ARGV, "--profile", str(profile_dir), "--json", str(tmp / "with.json")]) == 0
    assert main([*ARGV, "--json", str(tmp / "without.json")]) == 0
    with_profile, without = (json.loads((tmp / name).read_text()) for name in ("with.json", "without.json"))
    return with_profile, without, profile_dir


def test_every_contender_has_an_op_table_and_a_chrome_trace(runs):
    report, _, profile_dir = runs
    stems = [profile_stem(*key) for key in sorted(_row_keys(report))]
    assert "generate__seq2seq-greedy__hf-marianmtmodel-generate" in stems
    expected = {f"{stem}.{ext}" for stem in stems for ext in ("txt", "json")} | {"summary.md"}
    assert {path.name for path in profile_dir.iterdir()} == expected
    for stem in stems:
        table = (profile_dir / f"{stem}.txt").read_text()
        assert "Self CPU" in table and "Input Shapes" in table, stem  # both tables: by op, by input shape
        assert any(op in table for op in ("aten::addmm", "aten::mm", "aten::linear")), stem
        trace = json.loads((profile_dir / f"{stem}.json").read_text())
        assert any(event.get("name") == "aten::linear" for event in trace["traceEvents"]), stem


def test_summary_has_a_section_per_case_and_a_line_per_implementation(runs):
    report, _, profile_dir = runs
    summary = (profile_dir / "summary.md").read_text()
    sections = dict(part.split("\n", 1) for part in summary.split("\n## ")[1:])
    assert set(sections) == {f"generate / {case}" for _, case, _ in _row_keys(report)}
    for suite, case, implementation in _row_keys(report):
        lines = [line for line in sections[f"{suite} / {case}"].splitlines() if line.startswith("- ")]
        assert sum(line.startswith(f"- **{implementation}** (") for line in lines) == 1, implementation
        assert all(line.count(" ms, `") == 7 for line in lines)  # 8 ops per line


def test_profiling_leaves_the_timing_rows_alone(runs):
    with_profile, without, profile_dir = runs
    assert _row_keys(with_profile) == _row_keys(without)
    assert len(_row_keys(without)) == 6
    assert with_profile["settings"]["profile_dir"] == str(profile_dir)
    assert without["settings"]["profile_dir"] is None


def test_cli_rejects_bad_profile_options(capsys, tmp_path):
    assert main([*ARGV, "--profile", str(tmp_path), "--profile-steps", "0"]) == 2
    assert "profile steps must be >= 1, got 0" in capsys.readouterr().err
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("")
    assert main([*ARGV, "--profile", str(not_a_dir)]) == 2
    assert f"profile directory '{not_a_dir}' exists and is not a directory" in capsys.readouterr().err
    assert main([*ARGV, "--profile-steps", "5"]) == 2
    assert "--profile-steps 5 needs --profile DIR" in capsys.readouterr().err


def test_profile_runs_after_the_timed_steps_and_its_figures_match_the_trace(tmp_path):
    """The timed steps never run under the profiler; the summary's ms per step for aten::mm is what the
    Chrome trace records for it (the sum of its calls' durations / the profiled steps)."""
    a = torch.randn(192, 192, generator=torch.Generator().manual_seed(0))
    b = torch.randn(192, 192, generator=torch.Generator().manual_seed(1))
    profiled: list[bool] = []

    def step() -> torch.Tensor:
        profiled.append(torch.autograd._profiler_enabled())
        return a @ b

    contender = Contender(
        "Matmul 192", is_tformer=True, step=step, tokens_per_step=1, eager_step=lambda: a @ b
    )
    profiler = GroupProfiler(tmp_path, device=torch.device("cpu"), steps=4)
    run_group(
        [lambda: contender],
        device=torch.device("cpu"),
        steps=3,
        warmup=2,
        after_timing=lambda contenders: profiler.profile_group("suite", "case", contenders),
    )
    assert profiled == [False] * (2 + 3) + [True] * 4

    ((suite, case, [result]),) = profiler.groups
    assert (suite, case, result.implementation) == ("suite", "case", "Matmul 192")
    top = result.top_ops[0]
    assert top.name == "aten::mm"
    assert top.share == pytest.approx(100.0 * top.ms_per_step / result.ms_per_step)
    trace = json.loads((tmp_path / "suite__case__matmul-192.json").read_text())
    mm_us = [e["dur"] for e in trace["traceEvents"] if e.get("name") == "aten::mm" and e.get("ph") == "X"]
    assert len(mm_us) == 4
    assert top.ms_per_step == pytest.approx(sum(mm_us) / 1000.0 / 4, rel=0.05)
    shares = [op.share for op in result.top_ops]
    assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.0 + 1e-9
    assert "Matmul 192" in profiler.write_summary().read_text()


def test_profile_stem_is_a_file_name():
    assert (
        profile_stem("gpt-train", "eager", "torch.nn.Transformer") == "gpt-train__eager__torch.nn.transformer"
    )
    assert profile_stem("generate", "seq2seq beam 4", "HF MarianMTModel generate") == (
        "generate__seq2seq-beam-4__hf-marianmtmodel-generate"
    )
    assert profile_stem("a", "b/c", "d (e)") == "a__b-c__d-e"


def _event(key: str, device_type: DeviceType, *, cpu_us: float, device_us: float, annotation: bool = False):
    return SimpleNamespace(
        key=key,
        device_type=device_type,
        self_cpu_time_total=cpu_us,
        self_device_time_total=device_us,
        is_user_annotation=annotation,
    )


def test_cuda_summary_counts_each_kernel_once():
    """On CUDA an op's self device time is its kernel's, and the kernel (and the GPU mirror of a
    record_function range around it) are events too: the summary counts the kernels alone."""
    events = [
        _event("aten::mm", DeviceType.CPU, cpu_us=50.0, device_us=300.0),
        _event("aten::add", DeviceType.CPU, cpu_us=20.0, device_us=100.0),
        _event("Optimizer.step", DeviceType.CPU, cpu_us=10.0, device_us=0.0),
        _event("Optimizer.step", DeviceType.CUDA, cpu_us=0.0, device_us=400.0, annotation=True),
        _event("sm90_gemm_kernel", DeviceType.CUDA, cpu_us=0.0, device_us=300.0),
        _event("elementwise_kernel", DeviceType.CUDA, cpu_us=0.0, device_us=100.0),
    ]
    gpu = summarise("tformer", events, on_cuda=True, steps=2)
    assert gpu.ms_per_step == pytest.approx(0.2)  # (300 + 100) us over 2 steps
    assert [(op.name, op.share, op.ms_per_step) for op in gpu.top_ops] == [
        ("sm90_gemm_kernel", pytest.approx(75.0), pytest.approx(0.15)),
        ("elementwise_kernel", pytest.approx(25.0), pytest.approx(0.05)),
    ]
    cpu = summarise("tformer", events, on_cuda=False, steps=2)
    assert cpu.ms_per_step == pytest.approx(0.04)  # (50 + 20 + 10) us over 2 steps
    assert [op.name for op in cpu.top_ops] == ["aten::mm", "aten::add", "Optimizer.step"]
