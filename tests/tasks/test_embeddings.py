from __future__ import annotations

import gzip
import json
import math
import random
import struct
from pathlib import Path

import pytest
import torch

from tformer.cli.main import main
from tformer.data.catalog import locate
from tformer.data.tokenizers import train_word_tokenizer
from tformer.models.gpt import GPT, preset_config
from tformer.tasks.embeddings import (
    Word2VecTraining,
    WordVectors,
    context_similarities,
    train_word_vectors,
)

CLUSTERS = {"a": [f"a{i}" for i in range(8)], "b": [f"b{i}" for i in range(8)]}
GENDERS = {"m": ["he", "him", "his", "mr"], "f": ["she", "her", "hers", "mrs"]}
ROLES = ("royal", "common", "army", "church")


def cluster_corpus(n: int = 300, seed: int = 0) -> list[str]:
    """Sentences of 10 words from one cluster each: words co-occur only within their cluster."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(CLUSTERS[rng.choice("ab")], k=10)) for _ in range(n)]


def analogy_corpus(n: int = 800, seed: int = 0) -> list[str]:
    """Words "<role>_<gender>" appear with 3 gender and 3 role context words: a planted offset, so that
    royal_m - common_m + common_f = royal_f (king - man + woman = queen)."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        gender, role = rng.choice("mf"), rng.choice(ROLES)
        role_words = [f"{role}{i}" for i in range(4)]
        words = [f"{role}_{gender}", *rng.choices(GENDERS[gender], k=3), *rng.choices(role_words, k=3)]
        rng.shuffle(words)
        sentences.append(" ".join(words))
    return sentences


SMALL = dict(dim=16, min_count=1, sample=0.0, batch_size=64, seed=0)


@pytest.fixture(scope="module")
def cluster_vectors() -> WordVectors:
    return train_word_vectors(cluster_corpus(), training=Word2VecTraining(epochs=3, **SMALL))


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_planted_clusters_are_nearest_neighbours(mode: str) -> None:
    vectors = train_word_vectors(cluster_corpus(), training=Word2VecTraining(mode=mode, epochs=3, **SMALL))
    for word in ("a0", "b3"):
        neighbours = [w for w, _ in vectors.neighbors(word, k=7)]
        assert all(w[0] == word[0] for w in neighbours), (word, neighbours)
    # the loss goes down, far below its value at the start: output vectors at zero give (1 + K) log 2
    losses = vectors.settings["epoch_losses"]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * 6 * math.log(2), losses


@pytest.mark.parametrize("mode", ["skipgram", "cbow"])
def test_planted_analogy_is_recovered(mode: str) -> None:
    vectors = train_word_vectors(analogy_corpus(), training=Word2VecTraining(mode=mode, epochs=3, **SMALL))
    assert vectors.analogy("common_m", "royal_m", "common_f", k=1)[0][0] == "royal_f"
    assert vectors.analogy("army_f", "army_m", "church_f", k=1)[0][0] == "church_m"


def test_training_is_seeded(cluster_vectors: WordVectors) -> None:
    again = train_word_vectors(cluster_corpus(), training=Word2VecTraining(epochs=3, **SMALL))
    torch.testing.assert_close(again.vectors, cluster_vectors.vectors, rtol=0, atol=0)


def test_neighbors_and_analogy_against_brute_force() -> None:
    torch.manual_seed(0)
    words = [f"w{i}" for i in range(30)]
    vectors = WordVectors(words, torch.randn(30, 5))
    unit = vectors.vectors / vectors.vectors.norm(dim=1, keepdim=True)
    cos = unit @ unit[4]
    cos[4] = -2
    assert [w for w, _ in vectors.neighbors("w4", k=3)] == [
        words[i] for i in cos.argsort(descending=True)[:3]
    ]
    query = unit[2] - unit[1] + unit[3]
    cos = unit @ (query / query.norm())
    cos[[1, 2, 3]] = -2
    best = vectors.analogy("w1", "w2", "w3", k=2)
    assert [w for w, _ in best] == [words[i] for i in cos.argsort(descending=True)[:2]]
    assert best[0][1] == pytest.approx(cos.max().item(), abs=1e-6)


def test_unknown_word_names_it_and_close_matches(cluster_vectors: WordVectors) -> None:
    with pytest.raises(
        ValueError, match=r"word 'a09' is not in the vocabulary of 16 words; close matches: .*a0"
    ):
        cluster_vectors.neighbors("a09")
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        cluster_vectors.neighbors("a0", k=0)


def test_save_load_identical_and_no_pickle(cluster_vectors: WordVectors, tmp_path: Path) -> None:
    path = cluster_vectors.save(tmp_path / "vectors.safetensors")
    loaded = WordVectors.load(path)
    assert loaded.words == cluster_vectors.words
    torch.testing.assert_close(loaded.vectors, cluster_vectors.vectors, rtol=0, atol=0)
    assert loaded.settings == json.loads(json.dumps(cluster_vectors.settings))
    # safetensors layout: u64 header length, a JSON header, raw tensor bytes; nothing else, no pickle
    raw = path.read_bytes()
    (header_length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_length])
    assert header["vectors"]["dtype"] == "F32"
    assert len(raw) == 8 + header_length + 16 * 16 * 4
    assert not (tmp_path / "vectors.tmp").exists()


def test_load_rejects_other_files(tmp_path: Path) -> None:
    pickled = tmp_path / "p.safetensors"
    torch.save({"vectors": torch.zeros(2, 2)}, pickled)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        WordVectors.load(pickled)
    with pytest.raises(FileNotFoundError, match="tformer embed train"):
        WordVectors.load(tmp_path / "missing.safetensors")


def test_hidden_states_feed_the_lm_head() -> None:
    torch.manual_seed(0)
    model = GPT(preset_config("tiny", {"vocab_size": 50})).eval()
    ids = torch.randint(0, 50, (2, 7))
    hidden = model.hidden_states(ids)
    assert hidden.shape == (2, 7, 64)
    torch.testing.assert_close(model.lm_head(hidden), model(ids).logits)


BANK_SENTENCES = [
    "we sat on the bank of the river",
    "she paid the money into the bank",
    "the bank raised its interest rates",
]


def test_context_similarities_one_vector_against_many() -> None:
    torch.manual_seed(0)
    codec = train_word_tokenizer(BANK_SENTENCES)
    model = GPT(preset_config("tiny", {"vocab_size": codec.vocab_size}))
    words = sorted({w for s in BANK_SENTENCES for w in s.split()})
    vectors = WordVectors(words, torch.randn(len(words), 8))
    table = context_similarities(
        "bank", BANK_SENTENCES, word_vectors=vectors, language_model=model, codec=codec
    )
    torch.testing.assert_close(table.word2vec, torch.ones(3, 3))
    off_diagonal = table.language_model[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.max() < 0.999 and len({round(x, 4) for x in off_diagonal.tolist()}) == 3
    # the vector is the hidden state at "bank": with a causal model, the last one of the text up to "bank"
    prefix = torch.tensor([codec.encode("the bank")])
    with torch.no_grad():
        at_bank = model.eval().hidden_states(prefix)[0, -1]
    expected = torch.nn.functional.cosine_similarity(
        at_bank, _lm_vector(model, codec, BANK_SENTENCES[1]), dim=0
    )
    assert table.language_model[1, 2].item() == pytest.approx(expected.item(), abs=1e-5)
    assert "| 1-2 | 1.000 |" in table.to_markdown()


def _lm_vector(model: GPT, codec, sentence: str) -> torch.Tensor:
    ids = codec.encode(sentence)
    position = sentence.split().index("bank")  # word level: one token per word
    with torch.no_grad():
        return model.hidden_states(torch.tensor([ids]))[0, position]


def test_context_similarities_errors() -> None:
    codec = train_word_tokenizer(["the bank , by the river"])
    model = GPT(preset_config("tiny", {"vocab_size": codec.vocab_size}))
    vectors = WordVectors(["bank", "river"], torch.ones(2, 4))
    kwargs = dict(word_vectors=vectors, language_model=model, codec=codec)
    with pytest.raises(ValueError, match="'bank' does not occur"):
        context_similarities("bank", ["the river", "the bank"], **kwargs)
    with pytest.raises(ValueError, match="token boundary"):
        context_similarities("bank", ["the bank, by", "the bank"], **kwargs)
    with pytest.raises(ValueError, match="has no token for 'river'"):
        context_similarities(
            "river", ["the river", "a river"], **{**kwargs, "codec": train_word_tokenizer(["a"])}
        )
    with pytest.raises(ValueError, match="at least 2 sentences"):
        context_similarities("bank", ["the bank"], **kwargs)


def test_cli_train_neighbors_analogy_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data" / "wikitext2" / "train.txt.gz"
    data.parent.mkdir(parents=True)
    data.write_bytes(gzip.compress("\n".join(analogy_corpus()).encode()))
    out = tmp_path / "v.safetensors"
    args = ["--dim", "16", "--epochs", "3", "--min-count", "1", "--sample", "0", "--batch-size", "64"]
    assert main(["embed", "train", "--data-dir", str(tmp_path / "data"), *args, "--out", str(out)]) == 0
    assert "words x 16 (skipgram, 3 epochs" in capsys.readouterr().out
    assert main(["embed", "analogy", str(out), "common_m", "royal_m", "common_f", "-k", "1"]) == 0
    assert capsys.readouterr().out.split()[1] == "royal_f"
    assert main(["embed", "neighbors", str(out), "royal_f", "-k", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and all(float(line.split()[0]) <= 1.0 for line in printed)
    assert main(["embed", "neighbors", str(out), "royal_x"]) == 2
    assert "word 'royal_x' is not in the vocabulary" in capsys.readouterr().err


def test_wikitext2_smoke() -> None:
    """A slice of the real corpus trains; its vocabulary holds ordinary words (skipped without the data)."""
    try:
        path = locate("wikitext2", "wikitext2/train.txt.gz")
    except FileNotFoundError as error:
        pytest.skip(f"real data not in the data dir: {error}")
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        lines = [line for _, line in zip(range(600), stream, strict=False) if line.strip()]
    vectors = train_word_vectors(lines, training=Word2VecTraining(dim=16, epochs=1))
    assert {"the", "of", "and"} <= set(vectors.words[:10])
    assert len(vectors.neighbors("the", k=5)) == 5


def test_cli_contexts_compares_word2vec_with_a_trained_language_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data" / "wikitext2"
    root.mkdir(parents=True)
    text = "\n".join(BANK_SENTENCES * 20).encode()
    for split in ("train", "valid", "test"):
        (root / f"{split}.txt.gz").write_bytes(gzip.compress(text))
    data_dir = str(tmp_path / "data")
    vectors = tmp_path / "v.safetensors"
    w2v = ["--dim", "8", "--epochs", "1", "--min-count", "1", "--sample", "0"]
    assert main(["embed", "train", "--data-dir", data_dir, *w2v, "--out", str(vectors)]) == 0
    tiny_lm = [
        *("--model.d_model=16", "--model.n_heads=2", "--model.n_layers=1", "--model.d_ff=32"),
        *(
            "--model.context_length=16",
            "--data.block_size=16",
            "--data.batch_size=4",
            "--data.eval_stride=null",
        ),
        *("--train.max_steps=2", "--train.eval_every=2", "--train.device=cpu", "--train.progress_bar=false"),
    ]
    run = tmp_path / "lm"
    assert main(["train", "wikitext2", f"--data.data_dir={data_dir}", f"--out_dir={run}", *tiny_lm]) == 0
    capsys.readouterr()
    ckpt = str(run / "best.safetensors")
    assert main(["embed", "contexts", str(vectors), ckpt, "bank", *BANK_SENTENCES]) == 0
    out = capsys.readouterr().out
    assert out.startswith("**bank**") and out.count("| 1.000 |") == 3  # word2vec: one vector, 3 pairs
    assert main(["embed", "contexts", str(vectors), ckpt, "bank", BANK_SENTENCES[0]]) == 2
    assert "at least 2 sentences" in capsys.readouterr().err
