from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
import torch

from tformer.data.catalog import locate
from tformer.data.lm_corpora import WIKITEXT2_SPLITS, read_tinyshakespeare, read_wikitext2
from tformer.data.text_stream import encode_lines
from tformer.data.tokenizers import EOS_TOKEN, UNK_ID, UNK_TOKEN, Tokenizer, train_word_tokenizer

# Published figures (shared/data/README.md; nanoGPT's shakespeare_char prepare.py; pytorch/examples).
SHAKESPEARE_CHARS, SHAKESPEARE_DISTINCT = 1_115_394, 65
SHAKESPEARE_TRAIN, SHAKESPEARE_VALID = 1_003_854, 111_540
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
WIKITEXT2_TOKENS = {"train": 2_088_628, "valid": 217_646, "test": 245_569}  # one <eos> per line included
WIKITEXT2_LINES = {"train": 36_718, "valid": 3_760, "test": 4_358}
WIKITEXT2_SHA256 = {  # of the uncompressed files
    "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}
WIKITEXT2_VOCAB = 33_278  # distinct words of the data, <eos> and <unk> included


def _require(dataset: str, relative_path: str) -> None:
    try:
        locate(dataset, relative_path)
    except FileNotFoundError as error:
        pytest.skip(f"real data not in the data dir: {error}")


def _write_gz(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data))


@pytest.fixture(scope="module")
def shakespeare() -> dict[str, str]:
    _require("tinyshakespeare", "tinyshakespeare/input.txt.gz")
    return read_tinyshakespeare()


@pytest.fixture(scope="module")
def wikitext2() -> dict[str, list[str]]:
    for split in WIKITEXT2_SPLITS:
        _require("wikitext2", f"wikitext2/{split}.txt.gz")
    return {split: read_wikitext2(split) for split in WIKITEXT2_SPLITS}


@pytest.fixture(scope="module")
def wikitext2_tokenizer(wikitext2: dict[str, list[str]]) -> Tokenizer:
    return train_word_tokenizer(wikitext2["train"])


@pytest.fixture(scope="module")
def wikitext2_ids(wikitext2: dict[str, list[str]], wikitext2_tokenizer: Tokenizer) -> dict[str, torch.Tensor]:
    return {split: encode_lines(wikitext2_tokenizer, lines) for split, lines in wikitext2.items()}


def test_tinyshakespeare_matches_the_published_counts_and_nanogpt_split(shakespeare: dict[str, str]) -> None:
    train, valid = shakespeare["train"], shakespeare["valid"]
    assert (len(train), len(valid)) == (SHAKESPEARE_TRAIN, SHAKESPEARE_VALID)
    text = train + valid
    assert len(text) == SHAKESPEARE_CHARS
    assert len(set(text)) == SHAKESPEARE_DISTINCT
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == SHAKESPEARE_SHA256  # read byte for byte
    assert text.startswith("First Citizen:\n")


def test_wikitext2_lines_are_the_file_unchanged(wikitext2: dict[str, list[str]]) -> None:
    for split, lines in wikitext2.items():
        assert len(lines) == WIKITEXT2_LINES[split]
        text = "".join(line + "\n" for line in lines)
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == WIKITEXT2_SHA256[split], split
    assert wikitext2["train"][1] == " = Valkyria Chronicles III = "


def test_wikitext2_token_counts_and_vocabulary_match_pytorch_examples(
    wikitext2: dict[str, list[str]], wikitext2_tokenizer: Tokenizer, wikitext2_ids: dict[str, torch.Tensor]
) -> None:
    assert {split: len(ids) for split, ids in wikitext2_ids.items()} == WIKITEXT2_TOKENS
    data_vocab = {word for line in wikitext2["train"] for word in line.split()} | {EOS_TOKEN}
    assert len(data_vocab) == WIKITEXT2_VOCAB
    # The data's <eos> and <unk> are our specials; we add <pad> and <bos>.
    assert wikitext2_tokenizer.vocab_size == len(data_vocab) - 2 + 4
    ours = {wikitext2_tokenizer.id_to_token(i) for i in range(4, wikitext2_tokenizer.vocab_size)}
    assert ours == data_vocab - {EOS_TOKEN, UNK_TOKEN}


def test_wikitext2_only_the_literal_unk_encodes_to_unk(
    wikitext2: dict[str, list[str]], wikitext2_ids: dict[str, torch.Tensor]
) -> None:
    for split in ("valid", "test"):
        literal_unk = [word == UNK_TOKEN for line in wikitext2[split] for word in [*line.split(), EOS_TOKEN]]
        assert sum(literal_unk) > 0
        assert torch.equal(wikitext2_ids[split] == UNK_ID, torch.tensor(literal_unk)), split


def test_tinyshakespeare_split_by_hand_from_a_data_dir_in_the_environment(tmp_path, monkeypatch) -> None:
    _write_gz(tmp_path / "tinyshakespeare" / "input.txt.gz", b"abcdefghijklmnopqrstuvwxy")
    monkeypatch.setenv("TFORMER_DATA_DIR", str(tmp_path))
    # n = 25, int(25 * 0.9) = 22
    assert read_tinyshakespeare() == {"train": "abcdefghijklmnopqrstuv", "valid": "wxy"}


def test_text_is_read_byte_for_byte(tmp_path) -> None:
    text = "Ünïcode\r\nline two\r\n\ufeffno BOM stripping, no newline translation \u2028 x\n"
    _write_gz(tmp_path / "tinyshakespeare" / "input.txt.gz", text.encode("utf-8"))
    parts = read_tinyshakespeare(tmp_path)
    assert parts["train"] + parts["valid"] == text
    _write_gz(tmp_path / "wikitext2" / "test.txt.gz", b" = A = \n \n x \xc3\xa9 \r\n")
    assert read_wikitext2("test", tmp_path) == [" = A = ", " ", " x \u00e9 "]


def test_missing_files_say_which_where_and_how_to_get_them(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        read_tinyshakespeare(tmp_path)
    message = str(info.value)
    for part in ("tinyshakespeare/input.txt.gz", str(tmp_path), "--data-dir", "TFORMER_DATA_DIR"):
        assert part in message
    # re-packed (gzipped) copies have no byte-identical public URL: `tformer data download` cannot fetch them
    assert "copy it there by hand" in message and "tformer data download" not in message
    with pytest.raises(
        FileNotFoundError, match=r"wikitext2/valid\.txt\.gz.*copy it there by hand \(WikiText-2"
    ):
        read_wikitext2("valid", tmp_path)


def test_bad_split_lists_the_valid_ones(tmp_path) -> None:
    with pytest.raises(
        ValueError, match="unknown WikiText-2 split 'validation'; valid splits: train, valid, test"
    ):
        read_wikitext2("validation", tmp_path)


def test_invalid_utf8_names_the_file_and_line(tmp_path) -> None:
    _write_gz(tmp_path / "tinyshakespeare" / "input.txt.gz", b"First\nSecond\nbad \xe9 byte\n")
    with pytest.raises(ValueError, match=r"input\.txt\.gz:3: invalid UTF-8 at byte 4 of the line"):
        read_tinyshakespeare(tmp_path)
    _write_gz(tmp_path / "wikitext2" / "train.txt.gz", b" a \n b \n \xff c \n")
    with pytest.raises(ValueError, match=r"train\.txt\.gz:3: invalid UTF-8"):
        read_wikitext2("train", tmp_path)


def test_truncated_gzip_is_a_value_error(tmp_path) -> None:
    path = tmp_path / "tinyshakespeare" / "input.txt.gz"
    _write_gz(path, b"x" * 1000)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="truncated or corrupt gzip file"):
        read_tinyshakespeare(tmp_path)
