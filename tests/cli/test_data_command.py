"""`tformer data list | verify | download` through its own parser (main.py registers the command separately)."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from tformer.cli import data as data_command
from tformer.data import catalog
from tformer.data.catalog import DataFile, Dataset

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def run_data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tformer")
    data_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *argv])
    return args.run(args)


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """A one-file data set 'toy' in the catalog, its original reachable by a file:// URL."""
    origin = tmp_path / "origin.txt"
    origin.write_bytes(b"hello\n")
    file = DataFile("toy/hello.txt", hashlib.sha256(b"hello\n").hexdigest(), 6, origin.as_uri())
    monkeypatch.setitem(catalog.DATASETS, "toy", Dataset("toy", "toy data", (file,), "none"))
    return tmp_path / "data"


def test_list_shows_present_and_missing(toy, capsys):
    (toy / "toy").mkdir(parents=True)
    (toy / "toy" / "hello.txt").write_bytes(b"anything")
    assert run_data(["list", "--data-dir", str(toy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"data dir: {toy}"
    assert any(line.startswith("toy") and "1/1  files present (complete)" in line for line in lines)
    assert any(line.startswith("multi30k") and " 0/12 files present (12 missing)" in line for line in lines)


def test_verify_exit_status_and_one_line_per_file(toy, capsys):
    assert run_data(["verify", "toy", "--data-dir", str(toy)]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == ["missing       toy/hello.txt", "0 ok, 1 failed"]
    assert run_data(["download", "toy", "--data-dir", str(toy)]) == 0
    assert "1 files downloaded and verified" in capsys.readouterr().out
    assert run_data(["verify", "toy", "--data-dir", str(toy)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["ok            toy/hello.txt", "1 ok, 0 failed"]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not present at {SHARED_DATA}")
def test_verify_real_multi30k(capsys):
    assert run_data(["verify", "multi30k", "--data-dir", str(SHARED_DATA)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "12 ok, 0 failed"


def test_download_without_url_is_one_error_line_and_exit_1(tmp_path, capsys):
    assert run_data(["download", "iwslt14_de_en", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tformer data download: error: no public URL for iwslt14_de_en/valid.de.gz")
    assert "obtain them manually" in err and len(err.splitlines()) == 1


def test_unknown_name_is_a_user_error(tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'nope'; known: "):
        run_data(["verify", "nope", "--data-dir", str(tmp_path)])


def test_help_lists_the_actions(capsys):
    with pytest.raises(SystemExit):
        run_data(["--help"])
    out = capsys.readouterr().out
    assert all(action in out for action in ("list", "verify", "download", "multi30k"))
