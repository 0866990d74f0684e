"""The data sets tformer knows, as data: files with size and sha256, where they live, and how to check them.

Where the data directory is (`data_dir`), first match wins:
1. an explicit path (`--data-dir` on the command line),
2. the environment variable TFORMER_DATA_DIR,
3. ../shared/data relative to the current working directory, when it exists (the project's shared copy),
4. ~/.cache/tformer/data.

Paths in the catalog are relative to the data directory, e.g. "multi30k/train.en.gz". Sizes and sums were
copied from the index of the shared copy (shared/data/README.md); `verify` re-hashes the files on disk.
Only files that are byte-for-byte the public original carry a `url`; files that were re-packed for the
shared copy (gzipped, rebuilt) have none and must be copied in by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "TFORMER_DATA_DIR"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class DataFile:
    """One file of a data set: `path` relative to the data directory, its size in bytes and sha256."""

    path: str
    sha256: str
    size: int
    url: str | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    files: tuple[DataFile, ...]
    licence: str


class FileState(str, Enum):
    OK = "ok"
    MISSING = "missing"
    WRONG_SIZE = "wrong size"
    WRONG_SHA256 = "wrong sha256"


@dataclass(frozen=True)
class FileStatus:
    """What `verify` found for one catalogued file; `found` is the actual size or sha256 when it is wrong."""

    file: DataFile
    path: Path
    state: FileState
    found: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is FileState.OK

    def describe(self) -> str:
        """One line for people: state, path, and the expected vs found value when they differ."""
        line = f"{self.state.value:<13} {self.file.path}"
        if self.state is FileState.WRONG_SIZE:
            line += f": expected {self.file.size} bytes, found {self.found}"
        elif self.state is FileState.WRONG_SHA256:
            line += f": expected {self.file.sha256}, found {self.found}"
        return line


class DownloadError(OSError):
    """A download could not give a verified file: no public URL, a network failure, or a wrong checksum."""


_MULTI30K_COMMIT = "a3d2e0d26b56f3846f66a952536ffed4e401d05a"
_MULTI30K_URL = f"https://raw.githubusercontent.com/multi30k/dataset/{_MULTI30K_COMMIT}/data/task1"


def _multi30k(name: str, size: int, sha256: str, *, original: str) -> DataFile:
    return DataFile(f"multi30k/{name}", sha256, size, f"{_MULTI30K_URL}/{original}")


def _raw(name: str, size: int, sha256: str) -> DataFile:
    return _multi30k(name, size, sha256, original=f"raw/{name}")


def _image_split(split: str, size: int, sha256: str) -> DataFile:
    # Byte-identical to the original, only renamed here, so the original URL still verifies.
    return _multi30k(f"image_splits_{split}.txt", size, sha256, original=f"image_splits/{split}.txt")


# fmt: off
DATASETS: dict[str, Dataset] = {
    "multi30k": Dataset(
        name="multi30k",
        description="Multi30k task 1: image captions in en/de/fr, parallel by line; train 29,000 / val 1,014 / "
                    f"test_2016_flickr 1,000 lines per language (github.com/multi30k/dataset @ {_MULTI30K_COMMIT[:7]})",
        files=(
            _raw("train.en.gz", 568929, "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
            _raw("train.de.gz", 637044, "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
            _raw("train.fr.gz", 604242, "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c"),
            _raw("val.en.gz", 21650, "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
            _raw("val.de.gz", 24681, "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
            _raw("val.fr.gz", 23001, "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9"),
            _raw("test_2016_flickr.en.gz", 21077, "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
            _raw("test_2016_flickr.de.gz", 22890, "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
            _raw("test_2016_flickr.fr.gz", 22310, "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90"),
            _image_split("train", 427810, "97ee57e160a46c7d0e75298ebf57967e1245698a6f8806436ff07e61d1a41221"),
            _image_split("val", 14966, "db26f03eaf833ec47bfaea129ed053b68cbcfc5d1f9a09c4cdf7c88fbfea7108"),
            _image_split("test_2016_flickr", 14756, "871e8ecafc66fb13e044ecccf669d04a865b4c58553227df86b933f0337a1563"),
        ),
        licence="none stated in the source repository; partly derived from Flickr30K (image use under the "
                "Flickr Terms of Use); provided for non-commercial research and education",
    ),
    "iwslt14_de_en": Dataset(
        name="iwslt14_de_en",
        description="IWSLT14 German-English, fairseq prepare-iwslt14.sh output before BPE (tokenized, "
                    "lowercased); valid only, 7,283 pairs; train is not available (github.com/vkhangpham/"
                    "fairseq @ 252e2dc, examples/translation/iwslt14.tokenized.de-en/tmp/; gzipped here)",
        files=(
            DataFile("iwslt14_de_en/valid.de.gz", "b1da9c6171df1ef72cd06dae66197e326bc63ec3d23cf6dc4340b419b6e5ac47", 298904),
            DataFile("iwslt14_de_en/valid.en.gz", "ac59d064bb5832c71e0c0dd28c63fb70a1dd585312db134fdcf63ab450749397", 272243),
        ),
        licence="not stated in the source repository (code MIT); IWSLT/TED transcripts are usually CC BY-NC-ND",
    ),
    "tinyshakespeare": Dataset(
        name="tinyshakespeare",
        description="Tiny Shakespeare, 1,115,394 characters (github.com/karpathy/char-rnn @ 6f9487a, "
                    "data/tinyshakespeare/input.txt; gzipped here)",
        files=(
            DataFile("tinyshakespeare/input.txt.gz", "bed00f18e91cda6838950656f0a95e07e0f4dbe8649a4b959f7602a7e53fbc6e", 433627),
        ),
        licence="the text is Shakespeare (public domain); the source repository is MIT",
    ),
    "wikitext2": Dataset(
        name="wikitext2",
        description="WikiText-2, word level, the wiki.*.tokens files as used by pytorch/examples; train "
                    "2,088,628 / valid 217,646 / test 245,569 tokens (github.com/pytorch/examples @ 77f55b9, "
                    "word_language_model/data/wikitext-2/; train rebuilt byte-identical, all gzipped here)",
        files=(
            DataFile("wikitext2/train.txt.gz", "0c202e0b5d919429261b7291d9b5998f0db680c0a6700c0ff2a886d0abe055d4", 3674047),
            DataFile("wikitext2/valid.txt.gz", "3ac34ae2b6509075d52302c50a04a8a1970739ffe1a904f2cd374fefbea3cbf2", 373158),
            DataFile("wikitext2/test.txt.gz", "a2b26b5d2619cc1f6cd34c8e116a451aed09af51479346aadfbf508ceb8b192e", 410674),
        ),
        licence="not stated in the source repositories; WikiText is distributed under CC BY-SA",
    ),
}
# fmt: on


def get_dataset(name: str) -> Dataset:
    """The catalogued data set called `name`; ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: `explicit`, else $TFORMER_DATA_DIR, else ../shared/data if present, else ~/.cache."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    shared = Path.cwd().parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return Path.home() / ".cache" / "tformer" / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def check_file(file: DataFile, *, root: str | Path) -> FileStatus:
    """Size first (cheap), then sha256, of one catalogued file under `root`."""
    path = Path(root) / file.path
    if not path.is_file():
        return FileStatus(file, path, FileState.MISSING)
    size = path.stat().st_size
    if size != file.size:
        return FileStatus(file, path, FileState.WRONG_SIZE, str(size))
    digest = sha256_of(path)
    if digest != file.sha256:
        return FileStatus(file, path, FileState.WRONG_SHA256, digest)
    return FileStatus(file, path, FileState.OK)


def verify(dataset: Dataset | str, *, root: str | Path) -> list[FileStatus]:
    """One status per file of `dataset` (a Dataset or its catalogue name) under the data directory `root`."""
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    return [check_file(file, root=root) for file in dataset.files]


def locate(dataset_name: str, relative_path: str, *, root: str | Path | None = None) -> Path:
    """The path of a catalogued file, e.g. locate("multi30k", "multi30k/train.en.gz"); checks it exists.

    `relative_path` is relative to the data directory, as in `DataFile.path`. `root` goes through
    `data_dir`, so None means the default lookup. Does not hash: run `verify` for that.
    """
    dataset = get_dataset(dataset_name)
    known = [file.path for file in dataset.files]
    if relative_path not in known:
        raise ValueError(
            f"{relative_path!r} is not a file of data set {dataset_name!r}; its files: {', '.join(known)}"
        )
    root_dir = data_dir(root)
    path = root_dir / relative_path
    if not path.is_file():
        file = next(f for f in dataset.files if f.path == relative_path)
        fetch = (
            f"fetch it with `tformer data download {dataset_name}`"
            if file.url is not None
            else f"copy it there by hand ({dataset.description}; it has no public byte-identical URL)"
        )
        raise FileNotFoundError(
            f"{path} not found (data dir {root_dir}); point to a data dir that has it with --data-dir DIR or "
            f"{DATA_DIR_ENV}=DIR, or {fetch}"
        )
    return path


def download(dataset: Dataset | str, *, root: str | Path, timeout: float = 30) -> list[Path]:
    """Fetch the files of `dataset` that are missing or wrong under `root`; returns the paths written.

    Each file goes to a temporary file next to its target, is checked against its size and sha256, and only
    then renamed into place, so an interrupted or bad download never leaves a file that looks complete.
    Raises DownloadError when a needed file has no public URL, on a network failure and on a wrong checksum.
    """
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    needed = [status for status in verify(dataset, root=root) if not status.ok]
    manual = [status for status in needed if status.file.url is None]
    if manual:
        names = ", ".join(f"{status.file.path} ({status.state.value})" for status in manual)
        raise DownloadError(
            f"no public URL for {names}: these files were re-packed for the shared copy; obtain them manually "
            f"(source: {dataset.description}) and put them under {Path(root)}"
        )
    written = []
    for status in needed:
        logger.info(f"downloading {status.file.url} -> {status.path}")
        _fetch_verified(status.file, status.path, timeout=timeout)
        written.append(status.path)
    return written


def _fetch_verified(file: DataFile, path: Path, *, timeout: float) -> None:
    assert file.url is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(file.url, timeout=timeout) as response:
                    while block := response.read(_CHUNK_BYTES):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
                reason = getattr(error, "reason", error)
                raise DownloadError(f"could not download {file.url}: {reason}") from error
        if size != file.size or digest.hexdigest() != file.sha256:
            raise DownloadError(
                f"{file.url} gave {size} bytes with sha256 {digest.hexdigest()}, expected {file.size} bytes with "
                f"sha256 {file.sha256}; not saved"
            )
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
