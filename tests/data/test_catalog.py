"""Catalog: sums against the shared files and their index, data_dir precedence, verify states, locate, download."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tformer.data import catalog
from tformer.data.catalog import (
    DATASETS,
    DataFile,
    Dataset,
    DownloadError,
    FileState,
    data_dir,
    download,
    locate,
    verify,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared data not present at {SHARED_DATA}"
)


def toy_dataset(tmp_path: Path, contents: dict[str, bytes], *, with_url: bool = True) -> Dataset:
    """A data set whose files' originals sit in tmp_path/origin, reachable by file:// URLs."""
    origin = tmp_path / "origin"
    origin.mkdir(exist_ok=True)
    files = []
    for name, data in contents.items():
        (origin / name).write_bytes(data)
        url = (origin / name).as_uri() if with_url else None
        files.append(DataFile(f"toy/{name}", hashlib.sha256(data).hexdigest(), len(data), url))
    return Dataset(name="toy", description="toy data", files=tuple(files), licence="none")


def test_catalog_shapes():
    assert {"multi30k", "iwslt14_de_en", "tinyshakespeare", "wikitext2"} <= set(DATASETS)
    assert len(DATASETS["multi30k"].files) == 12 and len(DATASETS["iwslt14_de_en"].files) == 2
    for name, dataset in DATASETS.items():
        assert dataset.name == name
        for file in dataset.files:
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256) and file.size > 0
            assert file.path.startswith(f"{name}/") and not Path(file.path).is_absolute()


def test_multi30k_urls_point_at_the_pinned_originals():
    base = "https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/"
    urls = {file.path: file.url for file in DATASETS["multi30k"].files}
    assert urls["multi30k/train.en.gz"] == base + "raw/train.en.gz"
    assert urls["multi30k/image_splits_val.txt"] == base + "image_splits/val.txt"
    assert all(url.startswith(base) for url in urls.values())
    # Re-packed here (gzipped or rebuilt): the public original has a different checksum.
    for name in ("iwslt14_de_en", "tinyshakespeare", "wikitext2"):
        assert all(file.url is None for file in DATASETS[name].files)


@needs_shared
@pytest.mark.parametrize("name", ["multi30k", "iwslt14_de_en", "tinyshakespeare", "wikitext2"])
def test_catalog_matches_the_shared_files(name):
    statuses = verify(name, root=SHARED_DATA)
    assert [status.describe() for status in statuses if not status.ok] == []
    assert len(statuses) == len(DATASETS[name].files)


@needs_shared
def test_catalog_matches_the_shared_index():
    row = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(\d+)\s*\|\s*([0-9a-f]{64})\s*\|")
    index = {}
    for line in (SHARED_DATA / "README.md").read_text(encoding="utf-8").splitlines():
        if match := row.match(line.strip()):
            index[match.group(1)] = (int(match.group(2)), match.group(3))
    for dataset in DATASETS.values():
        for file in dataset.files:
            assert index[file.path] == (file.size, file.sha256), file.path
    catalogued_folders = {file.path.split("/")[0] for d in DATASETS.values() for file in d.files}
    indexed_in_those = {path for path in index if path.split("/")[0] in catalogued_folders}
    assert indexed_in_those == {file.path for d in DATASETS.values() for file in d.files}


def test_verify_reports_ok_missing_wrong_size_and_wrong_sha(tmp_path):
    dataset = toy_dataset(
        tmp_path, {"a.txt": b"alpha\n", "b.txt": b"bravo\n", "c.txt": b"charlie\n", "d": b"d"}
    )
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "toy/a.txt").write_bytes(b"alpha\n")
    (root / "toy/b.txt").write_bytes(b"bravo!\n")
    (root / "toy/c.txt").write_bytes(b"CHARLIE\n")  # same size, other bytes
    statuses = verify(dataset, root=root)
    assert [status.state for status in statuses] == [
        FileState.OK,
        FileState.WRONG_SIZE,
        FileState.WRONG_SHA256,
        FileState.MISSING,
    ]
    assert statuses[1].describe() == "wrong size    toy/b.txt: expected 6 bytes, found 7"
    assert statuses[2].found == hashlib.sha256(b"CHARLIE\n").hexdigest()
    assert statuses[3].path == root / "toy/d"


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown data set 'multi31k'; known: .*multi30k"):
        verify("multi31k", root=".")


def test_data_dir_precedence(tmp_path, monkeypatch):
    workdir = tmp_path / "project" / "main"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(catalog.DATA_DIR_ENV, raising=False)
    assert data_dir() == tmp_path / "home" / ".cache" / "tformer" / "data"
    shared = tmp_path / "project" / "shared" / "data"
    shared.mkdir(parents=True)
    assert data_dir().resolve() == shared.resolve()
    monkeypatch.setenv(catalog.DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert data_dir() == tmp_path / "from_env"
    assert data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_locate_finds_a_file_and_explains_a_missing_one(tmp_path):
    (tmp_path / "multi30k").mkdir()
    (tmp_path / "multi30k" / "val.en.gz").write_bytes(b"")
    assert locate("multi30k", "multi30k/val.en.gz", root=tmp_path) == tmp_path / "multi30k" / "val.en.gz"
    with pytest.raises(FileNotFoundError) as error:
        locate("multi30k", "multi30k/val.de.gz", root=tmp_path)
    message = str(error.value)
    for expected in (
        str(tmp_path / "multi30k" / "val.de.gz"),
        f"data dir {tmp_path}",
        "TFORMER_DATA_DIR",
        "--data-dir",
        "tformer data download multi30k",
    ):
        assert expected in message
    with pytest.raises(
        ValueError, match=r"'val.de.gz' is not a file of data set 'multi30k'; its files: multi30k/"
    ):
        locate("multi30k", "val.de.gz", root=tmp_path)


def test_download_from_file_url_verifies_and_renames(tmp_path):
    dataset = toy_dataset(tmp_path, {"a.txt": b"alpha\n", "b.txt": b"bravo\n"})
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    (root / "toy/b.txt").write_bytes(b"bravo\n")  # already there and right: not fetched again
    assert download(dataset, root=root) == [root / "toy/a.txt"]
    assert all(status.ok for status in verify(dataset, root=root))
    assert sorted(p.name for p in (root / "toy").iterdir()) == ["a.txt", "b.txt"]  # no temp files left
    assert download(dataset, root=root) == []


def test_download_rejects_a_bad_checksum_and_keeps_nothing(tmp_path):
    dataset = toy_dataset(tmp_path, {"a.txt": b"alpha\n"})
    (tmp_path / "origin" / "a.txt").write_bytes(b"ALPHA\n")  # the server now serves other bytes
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"a.txt gave 6 bytes with sha256 [0-9a-f]{64}, expected 6 bytes"):
        download(dataset, root=root)
    assert list((root / "toy").iterdir()) == []


def test_download_network_failure_is_a_download_error(tmp_path):
    dataset = toy_dataset(tmp_path, {"a.txt": b"alpha\n"})
    (tmp_path / "origin" / "a.txt").unlink()
    with pytest.raises(DownloadError, match=r"could not download file://.*a.txt"):
        download(dataset, root=tmp_path / "data")
    assert list((tmp_path / "data" / "toy").iterdir()) == []


def test_download_without_url_says_to_obtain_manually(tmp_path):
    dataset = toy_dataset(tmp_path, {"a.txt": b"alpha\n"}, with_url=False)
    with pytest.raises(DownloadError, match=r"no public URL for toy/a.txt \(missing\).*obtain them manually"):
        download(dataset, root=tmp_path / "data")
