"""`tformer <command>`: parse arguments, hand over to a task, print user errors as one line."""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from tformer.cli import (
    bench,
    compare,
    data,
    demo,
    embed,
    evaluate,
    generate,
    info,
    reproduce,
    train,
    translate,
)

COMMANDS = [demo, train, evaluate, translate, generate, reproduce, compare, data, info, embed, bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tformer",
        description="tformer: the Transformer of 'Attention Is All You Need', its relatives and their tools.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.run(args) or 0
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"tformer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:  # unwritable output, a directory given as a file, a full disk ...
        if args.debug:
            raise
        where = f" ({error.filename})" if error.filename else ""
        print(f"tformer {args.command}: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except torch.OutOfMemoryError as error:  # the trainer's names the step and says what to change
        if args.debug:
            raise
        first_line = (str(error).strip().splitlines() or ["out of memory"])[0]
        print(f"tformer {args.command}: error: {first_line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
