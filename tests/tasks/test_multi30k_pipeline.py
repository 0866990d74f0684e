"""Multi30k end to end at toy scale: train, save, reload, translate, evaluate, reproduce; data config errors."""

import json
import re

import pytest

from tformer.cli.main import main
from tformer.data.catalog import data_dir
from tformer.tasks.translation_data import TranslationDataConfig, load_pairs, prepare_text

pytestmark = pytest.mark.skipif(
    not (data_dir() / "multi30k" / "train.de.gz").is_file(), reason="the shared Multi30k copy is not present"
)

TINY_MODEL = [
    "--model.d_model=32",
    "--model.n_heads=2",
    "--model.d_ff=64",
    "--model.n_encoder_layers=1",
    "--model.n_decoder_layers=1",
    "--data.vocab_size=400",
    "--data.limit_pairs=200",
    "--data.eval_decode=10",
    "--data.max_tokens=1024",
    "--train.precision=fp32",
    "--train.progress_bar=false",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi30k")
    assert main(["train", "tiny_multi30k", f"--out_dir={out}"]) == 0
    return out


def test_train_reload_translate_and_evaluate(run_dir, capsys):
    ckpt = str(run_dir / "best.safetensors")
    assert main(["translate", ckpt, "Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["evaluate", ckpt, "--n", "8", "--split", "valid"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["n"] == 8 and metrics["split"] == "valid"
    assert "nrefs:1|case:mixed" in metrics["sacrebleu_signature"]
    assert "BLEU, lowercased tokenized text" in out and "sacreBLEU, cased detokenized" in out


def test_out_of_domain_split(run_dir, capsys):
    assert main(["evaluate", str(run_dir / "best.safetensors"), "--n", "3", "--split", "iwslt14_valid"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 3


@pytest.mark.skipif(
    not (data_dir() / "iwslt14_de_en" / "valid.de.gz").is_file(),
    reason="the shared IWSLT14 copy is not present",
)
def test_out_of_domain_split_reads_moses_escapes_as_characters():
    # the file's first German line is `es ist diese pyramide .`, and its English side `it &apos;s that pyramid .`
    pairs = load_pairs(
        TranslationDataConfig(dataset="multi30k", src_lang="de", tgt_lang="en"), "iwslt14_valid", seed=0
    )
    assert len(pairs) == 7283
    assert pairs[0][1].lower() == "it 's that pyramid ."
    quoted = [pair for pair in pairs if '"' in pair[0]]
    assert quoted and not any(re.search(r"&(#\d+|[a-z]+);", s + t) for s, t in pairs)  # no entity is left


def test_reproduce_trains_averages_and_compares(tmp_path, capsys):
    args = [
        "reproduce",
        "multi30k_de_en",
        "--average",
        "2",
        "--device",
        "cpu",
        f"--out_dir={tmp_path}",
        "--train.budget_minutes=null",  # the CPU recipe's 60 minutes become 4 steps
        "--train.max_steps=4",
        "--train.checkpoint_every=2",
        "--train.eval_every=2",
        *TINY_MODEL,
    ]
    assert main(args) == 1  # a 4-step toy model does not reach the target, and says so
    out = capsys.readouterr().out
    assert "recipe: cpu (multi30k_de_en_cpu" in out
    assert "target >= 37.0" in out and "NOT reached" in out and "36.52" in out
    assert "4 updates in" in out and "averaging and final evaluation" in out
    assert (tmp_path / "averaged.safetensors").is_file()


def test_real_splits_have_the_published_sizes():
    config = TranslationDataConfig(dataset="multi30k", src_lang="en", tgt_lang="fr")
    assert len(load_pairs(config, "valid", seed=0)) == 1014
    assert len(load_pairs(config, "test", seed=0)) == 1000


def test_normalisation_is_applied_to_inputs_like_the_training_data():
    config = TranslationDataConfig(dataset="multi30k", normalize=True, lowercase=True)
    assert (
        prepare_text(config, "„Ein Mann“", "de") == prepare_text(config, '"Ein Mann"', "de") == '"ein mann"'
    )


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(dataset="multi30k", src_lang="de", tgt_lang="de"), "both 'de'"),
        (dict(dataset="multi30k", src_lang="cs"), "data.src_lang 'cs' is unknown"),
        (dict(dataset="wmt14"), "data.dataset 'wmt14' is unknown"),
        (dict(limit_pairs=0), "data.limit_pairs must be an int >= 1 or None"),
    ],
)
def test_data_config_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        TranslationDataConfig(**fields)


def test_unknown_split_and_missing_data_dir(tmp_path):
    config = TranslationDataConfig(dataset="multi30k")
    with pytest.raises(ValueError, match="no split 'dev'"):
        load_pairs(config, "dev", seed=0)
    with pytest.raises(FileNotFoundError, match="TFORMER_DATA_DIR"):
        load_pairs(TranslationDataConfig(dataset="multi30k", data_dir=str(tmp_path)), "valid", seed=0)
