"""nanoGPT's documented CPU run on Tiny Shakespeare, run here, timed and parsed; optionally tformer's mirror of it.

nanoGPT's README ("I only have a macbook") documents

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

("about 3 minutes", validation loss 1.88). This script runs exactly that command with the current Python, in a
scratch directory, on the local copy of the text, and prints one table row: the last "val loss" nanoGPT
printed, the same model scored on the whole validation split, the wall time and where it went. With
`--tformer` it also trains tformer's preset `shakespeare_char_nanogpt_cpu` (the same configuration as tformer
settings, see the preset's header for what still differs) under the same thread setting and puts it in the
next row.

Getting nanoGPT (any checkout works; nothing in it is modified):

    git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT
    # or, from a bare mirror (e.g. the one the `fetch` tool gives):
    mkdir -p /tmp/nanoGPT && git --git-dir=<bare dir> archive HEAD | tar -x -C /tmp/nanoGPT
    # (`git --git-dir=<bare dir> worktree add /tmp/nanoGPT HEAD` also works, but writes into the mirror)

Usage, from the tformer repository root:

    .venv/bin/python benchmarks/nanogpt_peer.py --nanogpt /tmp/nanoGPT               # the documented run
    .venv/bin/python benchmarks/nanogpt_peer.py --nanogpt /tmp/nanoGPT --tformer     # and tformer's preset
    .venv/bin/python benchmarks/nanogpt_peer.py --nanogpt /tmp/nanoGPT --max-iters 20 --threads 1  # smoke
    options: --data-dir DIR (default $TFORMER_DATA_DIR, else ../shared/data), --work-dir DIR (default a new
    directory under the system temp dir; kept, with both logs), --threads N, --json FILE

What it does:

1. Data: reads `tinyshakespeare/input.txt.gz` (or `input.txt`) under the data dir, writes it as `input.txt`
   next to a copy of nanoGPT's `data/shakespeare_char/prepare.py` in the work dir and runs that file
   unchanged: it skips its download when input.txt exists, so `requests` (imported at its top) is replaced
   by an empty stand-in module when it is not installed. train.bin / val.bin / meta.pkl are then checked
   against the text (vocabulary of the whole text, first 90% / last 10% of the characters).
2. nanoGPT: copies train.py, model.py, configurator.py and config/train_shakespeare_char.py into the work dir
   (train.py reads `configurator.py`, the config file and `data/<dataset>` relative to its working
   directory, and writes out-shakespeare-char/ there) and runs the documented command there with
   `sys.executable`. Needs only numpy and torch.
3. Timing: the wall time of the process (start-up, imports, data, model, all evaluations, checkpoint
   writes), and from nanoGPT's own output: its evaluations (each line "step N: train loss .., val loss .."
   is timed from the line printed before it, read as it streams: eval_iters=20 batches of each split) and
   the iteration times it prints ("time ..ms"; the iteration that evaluates includes the evaluation and,
   after an improvement, the checkpoint write). train s = the sum of iteration times - evaluation time.
   nanoGPT evaluates at iteration 0 and every eval_interval (250) iterations, and runs one update past the
   last evaluation (iterations 0..max_iters): the reported val loss is after max_iters updates.
4. The same yardstick for both: nanoGPT's figure is the mean of 20 random validation batches of 12 x 64, so it
   carries sampling noise of about +-0.01. Its saved checkpoint (written whenever that figure improved; with
   the documented run, after the last update) is also scored the way tformer scores, on every validation
   target once in non-overlapping windows of 64, by nanoGPT's own model.py in the work dir ("whole split").
5. `--max-iters N` replaces max_iters and lr_decay_iters by N (a smoke test); below 400 iterations the
   warmup becomes N // 4 (tformer requires warmup < total; nanoGPT would stay in warmup) and when N is not a
   multiple of 250 the evaluation interval becomes N, so that both sides evaluate after exactly N updates.
   The table says which arguments differ from the documented command.

Threads: by default neither side is told a thread count (torch uses the physical cores, as in nanoGPT's
documented run). `--threads N` sets OMP_NUM_THREADS and MKL_NUM_THREADS for both processes; on a machine
whose cores are busy with other work, fewer threads than cores gives steadier figures (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tformer.bench.harness import cpu_model

# nanoGPT README, "I only have a macbook": everything after `python train.py`.
DOCUMENTED_ARGS = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
]
DOCUMENTED_ITERS, DOCUMENTED_WARMUP, DOCUMENTED_EVAL_INTERVAL = 2000, 100, 250
DOCUMENTED_VAL_LOSS = 1.88
NANOGPT_FILES = ("train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py")
PREPARE = "data/shakespeare_char/prepare.py"
TFORMER_PRESET = "shakespeare_char_nanogpt_cpu"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Runs prepare.py as a script; `requests` is only used for the download it skips when input.txt exists.
_PREPARE_RUNNER = """
import runpy, sys, types
try:
    import requests  # noqa: F401
except ImportError:
    sys.modules["requests"] = types.ModuleType("requests")
runpy.run_path(sys.argv[1], run_name="__main__")
"""

_EVAL_LINE = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)")
_ITER_LINE = re.compile(r"^iter (\d+): loss ([\d.]+), time ([\d.]+)ms")
_PARAMS_LINE = re.compile(r"^num (decayed|non-decayed) parameter tensors: \d+, with ([\d,]+) parameters")


def default_data_dir() -> Path:
    env = os.environ.get("TFORMER_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def read_tinyshakespeare(data_dir: Path) -> bytes:
    """The raw bytes of the Tiny Shakespeare text (gzipped or not), exactly as stored."""
    folder = data_dir / "tinyshakespeare"
    for name in ("input.txt.gz", "input.txt"):
        path = folder / name
        if path.is_file():
            return gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    raise FileNotFoundError(
        f"no Tiny Shakespeare text under {folder} (looked for input.txt.gz and input.txt); pass --data-dir "
        "or set TFORMER_DATA_DIR to the folder that holds tinyshakespeare/"
    )


def check_nanogpt(nanogpt: Path) -> None:
    missing = [name for name in (*NANOGPT_FILES, PREPARE) if not (nanogpt / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{nanogpt} is not a nanoGPT checkout: missing {', '.join(missing)} (see this script's docstring "
            "for how to get one)"
        )


def inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def prepare_work_dir(nanogpt: Path, text: bytes, work: Path) -> dict[str, int]:
    """Copy nanoGPT's training code into `work` and run its prepare.py there on `text`; returns the counts."""
    for name in NANOGPT_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nanogpt / name, work / name)
    data = work / "data" / "shakespeare_char"
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy2(nanogpt / PREPARE, data / "prepare.py")
    (data / "input.txt").write_bytes(text)
    result = subprocess.run(
        [sys.executable, "-c", _PREPARE_RUNNER, str(data / "prepare.py")],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"nanoGPT's prepare.py failed:\n{result.stdout}\n{result.stderr}")
    # The files must be what prepare.py promises: ids over the whole text's sorted characters, split 90/10.
    chars = text.decode("utf-8")
    cut = int(len(chars) * 0.9)
    train = np.fromfile(data / "train.bin", dtype=np.uint16)
    val = np.fromfile(data / "val.bin", dtype=np.uint16)
    with open(data / "meta.pkl", "rb") as f:  # written a moment ago by prepare.py, not untrusted input
        meta = pickle.load(f)
    stoi = {c: i for i, c in enumerate(sorted(set(chars)))}
    if meta["stoi"] != stoi or len(train) != cut or len(val) != len(chars) - cut:
        raise RuntimeError(f"prepare.py wrote unexpected files in {data}")
    if "".join(meta["itos"][int(i)] for i in val[:200]) != chars[cut : cut + 200]:
        raise RuntimeError(f"{data}/val.bin does not decode to the last 10% of the text")
    return {
        "chars": len(chars),
        "vocab": meta["vocab_size"],
        "train_tokens": len(train),
        "val_tokens": len(val),
    }


def schedule_for(max_iters: int) -> tuple[int, int]:
    """(warmup, eval interval) for a run of `max_iters`: the documented ones unless the run is shortened."""
    warmup = DOCUMENTED_WARMUP if max_iters >= 4 * DOCUMENTED_WARMUP else max(1, max_iters // 4)
    eval_interval = DOCUMENTED_EVAL_INTERVAL if max_iters % DOCUMENTED_EVAL_INTERVAL == 0 else max_iters
    return warmup, eval_interval


def nanogpt_args(max_iters: int) -> tuple[list[str], list[str]]:
    """(arguments of train.py, those that differ from the documented command)."""
    args = [
        {"--max_iters": f"--max_iters={max_iters}", "--lr_decay_iters": f"--lr_decay_iters={max_iters}"}.get(
            arg.split("=")[0], arg
        )
        for arg in DOCUMENTED_ARGS
    ]
    warmup, eval_interval = schedule_for(max_iters)
    if warmup != DOCUMENTED_WARMUP:
        args.append(f"--warmup_iters={warmup}")
    if eval_interval != DOCUMENTED_EVAL_INTERVAL:
        args.append(f"--eval_interval={eval_interval}")
    return args, [arg for arg in args if arg not in DOCUMENTED_ARGS]


def run_streaming(
    command: list[str], *, cwd: Path, env: dict[str, str], log: Path
) -> tuple[list, float, int]:
    """Run `command`, stamping each output line (stdout and stderr together) with the time it arrived."""
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            out.write(line)
        returncode = process.wait()
    return lines, time.perf_counter() - start, returncode


def parse_nanogpt(lines: list[tuple[float, str]]) -> dict:
    evals, iter_ms, params = [], [], {}
    for k, (stamp, line) in enumerate(lines):
        if m := _EVAL_LINE.match(line):
            started = lines[k - 1][0] if k else 0.0
            evals.append(
                {
                    "step": int(m[1]),
                    "train_loss": float(m[2]),
                    "val_loss": float(m[3]),
                    "seconds": stamp - started,
                }
            )
        elif m := _ITER_LINE.match(line):
            iter_ms.append(float(m[3]))
        elif m := _PARAMS_LINE.match(line):
            params[m[1]] = int(m[2].replace(",", ""))
    if not evals:
        raise RuntimeError("nanoGPT printed no 'step N: ... val loss' line")
    eval_s = sum(e["seconds"] for e in evals)
    return {
        "val_loss": evals[-1]["val_loss"],
        "train_loss": evals[-1]["train_loss"],
        "at_step": evals[-1]["step"],
        "updates": len(iter_ms),
        "evals": len(evals),
        "eval_s": eval_s,
        "train_s": sum(iter_ms) / 1000 - eval_s,
        "median_iter_ms": statistics.median(iter_ms) if iter_ms else float("nan"),
        "params": sum(params.values()),
        "decayed_params": params.get("decayed"),
        "curve": evals,
    }


# nanoGPT's own figure averages 20 random batches; this scores its last checkpoint (written at its last
# improvement) on the windows tformer scores: every validation target once, in non-overlapping windows of
# block_size. Run in the work dir, where nanoGPT's model.py is; the checkpoint is this run's own file, and
# weights_only=True loads it without unpickling code.
_RESCORE_NANOGPT = """
import json
import numpy as np, torch
from model import GPT, GPTConfig
ckpt = torch.load("out-shakespeare-char/ckpt.pt", map_location="cpu", weights_only=True)
model = GPT(GPTConfig(**ckpt["model_args"]))
model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
model.eval()
val = torch.from_numpy(np.fromfile("data/shakespeare_char/val.bin", dtype=np.uint16).astype(np.int64))
block, total, count = ckpt["model_args"]["block_size"], 0.0, 0
with torch.no_grad():
    for begin in range(0, len(val) - 1, block):
        window = val[begin : begin + block + 1]
        _, loss = model(window[None, :-1], window[None, 1:])
        total, count = total + loss.item() * (len(window) - 1), count + len(window) - 1
print(json.dumps({"val_loss": total / count, "targets": count, "iter_num": ckpt["iter_num"]}))
"""


def rescore_nanogpt(work: Path, env: dict[str, str]) -> dict:
    """nanoGPT's saved model on the whole validation split: {"val_loss", "targets", "iter_num"}."""
    result = subprocess.run(
        [sys.executable, "-c", _RESCORE_NANOGPT],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scoring nanoGPT's checkpoint failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def tformer_overrides(max_iters: int, out_dir: Path, data_dir: Path) -> list[str]:
    overrides = [f"--out_dir={out_dir}", f"--data.data_dir={data_dir}", "--train.progress_bar=false"]
    if max_iters != DOCUMENTED_ITERS:
        warmup, eval_interval = schedule_for(max_iters)
        overrides += [
            f"--train.max_steps={max_iters}",
            f"--train.schedule.total_steps={max_iters}",
            f"--train.schedule.warmup_steps={warmup}",
            f"--train.eval_every={eval_interval}",
        ]
    return overrides


# `tformer train PRESET OVERRIDES...` (the same two calls as the CLI), then the final progress counters: the
# last checkpoint's copy is written before the final evaluation is counted in eval_seconds.
_TFORMER_RUNNER = """
import json, sys
from tformer.tasks.runs import load_run_config, train
result, _, _ = train(load_run_config(sys.argv[1], sys.argv[2:]))
print("TFORMER_PROGRESS " + json.dumps(result.progress.to_dict()))
"""


def run_tformer(max_iters: int, work: Path, data_dir: Path, env: dict[str, str]) -> dict:
    out_dir = work / "tformer"
    out_dir.mkdir()  # also its working directory: `python -c` imports from there, and work/ holds model.py
    overrides = tformer_overrides(max_iters, out_dir, data_dir)
    command = [sys.executable, "-c", _TFORMER_RUNNER, TFORMER_PRESET, *overrides]
    lines, wall, returncode = run_streaming(command, cwd=out_dir, env=env, log=work / "tformer.log")
    if returncode != 0:
        raise RuntimeError(f"tformer failed (exit {returncode}); see {work / 'tformer.log'}")
    marker = [line for _, line in lines if line.startswith("TFORMER_PROGRESS ")]
    progress = json.loads(marker[-1].split(" ", 1)[1])
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [r for r in records if "val_loss" in r]
    return {
        "val_loss": evals[-1]["val_loss"],
        "at_step": evals[-1]["step"],
        "updates": progress["step"],
        "evals": len(evals),
        "eval_s": progress["eval_seconds"],  # evaluations and checkpoint writes
        "train_s": progress["train_seconds"],
        "wall_s": wall,
        "command": " ".join(["tformer", "train", TFORMER_PRESET, *overrides]),
        "whole_split": {"val_loss": evals[-1]["val_loss"], "iter_num": evals[-1]["step"]},  # its own figure
        "curve": evals,
    }


def print_table(rows: list[tuple[str, dict]]) -> None:
    header = (
        "run",
        "val loss (own)",
        "val loss (whole split)",
        "at step",
        "updates",
        "evals",
        "wall s",
        "train s",
        "eval s",
        "ms/update",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, r in rows:
        per_update = 1000 * r["train_s"] / max(r["updates"], 1)
        cells = (
            name,
            f"{r['val_loss']:.4f}",
            f"{r['whole_split']['val_loss']:.4f} (step {r['whole_split']['iter_num']})",
            r["at_step"],
            r["updates"],
            r["evals"],
            f"{r['wall_s']:.1f}",
            f"{r['train_s']:.1f}",
            f"{r['eval_s']:.1f}",
            f"{per_update:.1f}",
        )
        print("| " + " | ".join(map(str, cells)) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nanogpt", type=Path, required=True, help="a nanoGPT checkout (see the docstring)")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="default $TFORMER_DATA_DIR, else ../shared/data"
    )
    p.add_argument("--max-iters", type=int, default=DOCUMENTED_ITERS, help="shorten the run (smoke test)")
    p.add_argument("--threads", type=int, default=None, help="OMP/MKL threads for both runs (default: unset)")
    p.add_argument("--tformer", action="store_true", help=f"also train tformer's {TFORMER_PRESET} preset")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch dir (default: a new temp dir)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.max_iters < 4:
        p.error(f"--max-iters must be >= 4, got {args.max_iters}")
    data_dir = (args.data_dir or default_data_dir()).resolve()
    nanogpt = args.nanogpt.resolve()
    check_nanogpt(nanogpt)
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="nanogpt_peer_"))).resolve()
    if inside(work, REPO_ROOT) or inside(work, nanogpt):
        p.error(f"--work-dir {work} is inside {REPO_ROOT} or {nanogpt}; use a scratch directory elsewhere")
    if work.exists() and any(work.iterdir()):
        p.error(f"--work-dir {work} is not empty; give a new or empty directory")
    work.mkdir(parents=True, exist_ok=True)

    counts = prepare_work_dir(nanogpt, read_tinyshakespeare(data_dir), work)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines arrive when printed, so evaluations can be timed
    if args.threads is not None:
        env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    train_args, changed = nanogpt_args(args.max_iters)
    lines, wall, returncode = run_streaming(
        [sys.executable, "train.py", *train_args], cwd=work, env=env, log=work / "nanogpt.log"
    )
    if returncode != 0:
        tail = "\n".join(line for _, line in lines[-20:])
        raise RuntimeError(f"nanoGPT failed (exit {returncode}); {work / 'nanogpt.log'} ends with:\n{tail}")
    nano = {**parse_nanogpt(lines), "wall_s": wall, "command": " ".join(["python", "train.py", *train_args])}
    nano["whole_split"] = rescore_nanogpt(work, env)
    rows = [("nanoGPT", nano)]
    if args.tformer:
        rows.append(("tformer", run_tformer(args.max_iters, work, data_dir, env)))

    print(
        f"nanoGPT {nanogpt}, data {counts['chars']:,} characters (vocab {counts['vocab']}, train "
        f"{counts['train_tokens']:,} / val {counts['val_tokens']:,}), work dir {work}"
    )
    print(
        f"threads: {args.threads or 'unset'}; torch {_torch_version()}; {cpu_model()}, {os.cpu_count()} CPUs"
    )
    print_table(rows)
    print(f"nanoGPT: {nano['command']}")
    print(
        "  differs from the documented command: "
        + (", ".join(changed) if changed else "nothing")
        + f"; README: val loss {DOCUMENTED_VAL_LOSS} after {DOCUMENTED_ITERS} iterations, 'about 3 minutes'"
    )
    print(
        "  own val loss from 20 random batches of 12 x 64; whole split: its saved checkpoint (the last one whose "
        "own val loss improved) scored as tformer scores; train s includes its checkpoint writes"
    )
    if args.tformer:
        print(f"tformer: {rows[1][1]['command']}")
        print(
            "  val loss over the whole validation split (non-overlapping windows of 64); eval s includes "
            "checkpoint writes"
        )
    if args.json:
        report = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": _torch_version(),
            "python": platform.python_version(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "max_iters": args.max_iters,
            "data": counts,
            "work_dir": str(work),
            "runs": dict(rows),
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    raise SystemExit(main())
