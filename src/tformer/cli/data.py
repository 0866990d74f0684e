"""`tformer data list | verify [NAME ...] | download NAME`: the catalogued data sets on this machine."""

from __future__ import annotations

import argparse
import sys

from tformer.data.catalog import (
    DATA_DIR_ENV,
    DATASETS,
    DownloadError,
    data_dir,
    download,
    get_dataset,
    verify,
)

_DATA_DIR_HELP = (
    f"data directory (default: ${DATA_DIR_ENV}, else ../shared/data if it exists, else ~/.cache/tformer/data)"
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        help="list, verify (size + sha256) and download the known data sets",
        description="The data sets tformer knows, with the size and sha256 of every file. "
        f"Known: {', '.join(DATASETS)}.",
        epilog="examples: tformer data list; tformer data verify multi30k --data-dir ~/data; "
        "tformer data download multi30k",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", default=None, help=_DATA_DIR_HELP)
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", parents=[common], help="each data set with its files present or missing (no hashing)"
    )
    listing.set_defaults(run=run_list)

    checking = actions.add_parser(
        "verify", parents=[common], help="check size and sha256 of every file; exit 1 on any problem"
    )
    checking.add_argument(
        "names", nargs="*", metavar="NAME", help=f"data sets to check (default: all of {', '.join(DATASETS)})"
    )
    checking.set_defaults(run=run_verify)

    fetching = actions.add_parser(
        "download",
        parents=[common],
        help="fetch missing or wrong files from their public URL, verified before they are kept",
    )
    fetching.add_argument("name", metavar="NAME", help=f"data set to fetch: one of {', '.join(DATASETS)}")
    fetching.add_argument(
        "--timeout", type=float, default=30, help="seconds to wait for the server (default: 30)"
    )
    fetching.set_defaults(run=run_download)


def run_list(args: argparse.Namespace) -> int:
    root = data_dir(args.data_dir)
    print(f"data dir: {root}")
    for dataset in DATASETS.values():
        present = sum((root / file.path).is_file() for file in dataset.files)
        state = "complete" if present == len(dataset.files) else f"{len(dataset.files) - present} missing"
        print(f"{dataset.name:<16} {present:>2}/{len(dataset.files):<2} files present ({state})")
        print(f"{'':<16} {dataset.description}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    root = data_dir(args.data_dir)
    datasets = [get_dataset(name) for name in args.names] or list(DATASETS.values())
    print(f"data dir: {root}")
    statuses = [status for dataset in datasets for status in verify(dataset, root=root)]
    for status in statuses:
        print(status.describe())
    failed = sum(not status.ok for status in statuses)
    print(f"{len(statuses) - failed} ok, {failed} failed")
    return 1 if failed else 0


def run_download(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {args.timeout}")
    root = data_dir(args.data_dir)
    try:
        written = download(get_dataset(args.name), root=root, timeout=args.timeout)
    except DownloadError as error:
        print(f"tformer data download: error: {error}", file=sys.stderr)
        return 1
    done = f"{len(written)} files downloaded and verified" if written else "nothing to download"
    print(f"{args.name}: {done}; all files ok under {root}")
    return 0
