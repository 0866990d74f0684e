"""Where training records go: a readable stdout line, out_dir/log.jsonl, and TensorBoard when it imports.

Only the main process logs; on other ranks the logger is built disabled and every call is a no-op, so the
trainer never branches on rank to log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

LOGGER_NAME = "tformer"
JSONL_NAME = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
RUN_INFO_NAME = "run.json"

logger = logging.getLogger(LOGGER_NAME)


class _TqdmStdoutHandler(logging.Handler):
    """Writes through tqdm so that log lines do not tear a progress bar that is being drawn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # logging handlers must never raise into the caller
            self.handleError(record)


def _ensure_stdout_handler() -> None:
    # Respect any logging setup the application made; only a bare process gets our stdout handler.
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = _TqdmStdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def format_record(record: dict[str, Any]) -> str:
    """One readable line: ``step 100 | loss 2.345 | lr 0.0005 | items_per_s 1.2e+04``."""
    parts = [f"step {record['step']}"]
    for key, value in record.items():
        if key == "step":
            continue
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " | ".join(parts)


def _json_safe(value: Any) -> Any:
    # Strict JSON has no NaN/Infinity; write null so every line parses with any JSON reader.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _truncate_jsonl(path: Path, *, keep_until_step: int) -> None:
    """Keep the records of steps <= keep_until_step; a resumed run rewrites the steps after its checkpoint."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the half-written last line of a killed run
            continue
        if (
            isinstance(record, dict)
            and isinstance(record.get("step"), int)
            and record["step"] <= keep_until_step
        ):
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


class RunLogger:
    """Sends each record (a flat dict with an int ``step``) to stdout, log.jsonl and TensorBoard.

    ``start_step`` is the step the run starts from (0 fresh, the checkpoint's step on resume): records after
    it, left by an interrupted run, are dropped so the log reads as one uninterrupted run.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        enabled: bool,
        start_step: int = 0,
        total_steps: int | None = None,
        progress_bar: bool = False,
    ) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self._jsonl = None
        self._tensorboard = None
        # tqdm draws only on a terminal: in files and CI logs a bar is noise, the log lines say it all
        show_bar = enabled and progress_bar and sys.stderr.isatty()
        self._bar = tqdm(
            total=total_steps, initial=start_step, disable=not show_bar, desc="train", unit="step"
        )
        if not enabled:
            return
        _ensure_stdout_handler()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        jsonl_path = self.out_dir / JSONL_NAME
        _truncate_jsonl(jsonl_path, keep_until_step=start_step)
        self._jsonl = jsonl_path.open("a", encoding="utf-8")
        self._tensorboard = _open_tensorboard(self.out_dir / TENSORBOARD_DIR, start_step=start_step)

    def write_run_info(self, info: dict[str, Any]) -> None:
        """out_dir/run.json: what is needed to say how a run was made (seed, versions, device, config)."""
        if self.enabled:
            text = json.dumps(info, indent=2, sort_keys=True, default=str)
            (self.out_dir / RUN_INFO_NAME).write_text(text + "\n", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        logger.info(format_record(record))
        assert self._jsonl is not None
        self._jsonl.write(json.dumps({key: _json_safe(value) for key, value in record.items()}) + "\n")
        # Flushed per record: a killed run keeps its log, and tests poll the file for progress.
        self._jsonl.flush()
        if self._tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, record["step"])

    def advance(self) -> None:
        """One more update queued: move the progress bar."""
        self._bar.update(1)

    def set_total(self, total_steps: int) -> None:
        """The run's length became known (a budgeted run's plan): the bar's end moves there."""
        self._bar.total = total_steps
        self._bar.refresh()

    def show(self, **postfix: str) -> None:
        """Show `postfix` (the latest loss, lr, items/s) beside the progress bar until the next call."""
        self._bar.set_postfix(postfix, refresh=False)

    def info(self, message: str) -> None:
        if self.enabled:
            logger.info(message)

    def warning(self, message: str) -> None:
        if self.enabled:
            logger.warning(message)

    def close(self) -> None:
        self._bar.close()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def _open_tensorboard(log_dir: Path, *, start_step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra; the JSONL log is the record of truth
        return None
    # purge_step drops events an interrupted run wrote after the checkpoint we resume from.
    return SummaryWriter(log_dir=str(log_dir), purge_step=start_step + 1 if start_step > 0 else None)
