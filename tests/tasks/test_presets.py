import pytest

from tformer.tasks.runs import load_run_config, preset_names

from .run_configs import LSTM_DATES


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_loads_and_validates(name):
    config = load_run_config(name)
    assert config.out_dir.startswith("runs/")


def test_extends_applies_the_file_on_top_of_its_base():
    base, derived = load_run_config("multi30k_de_en"), load_run_config("multi30k_en_fr")
    assert (derived.data.src_lang, derived.data.tgt_lang) == ("en", "fr")
    assert derived.model == base.model and derived.train == base.train
    assert derived.out_dir == "runs/multi30k_en_fr"


def test_extends_loop_and_bad_value_are_errors(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="loops back"):
        load_run_config(str(loop))
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: [a, b]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must name a preset"):
        load_run_config(str(bad))


def test_the_lstm_recipe_shares_data_and_decoding_with_the_transformer_recipe():
    transformer, lstm = load_run_config("multi30k_de_en"), load_run_config("multi30k_de_en_lstm")
    assert lstm.model.type == "lstm_attention" and transformer.model.type == "transformer"
    assert lstm.data == transformer.data and lstm.decode == transformer.decode


def test_an_lstm_model_runs_through_the_translation_pipeline(tmp_path, capsys):
    from tformer.cli.main import main
    from tformer.models.rnn import LSTMAttentionSeq2Seq
    from tformer.tasks.runs import load_trained

    config = tmp_path / "lstm.yaml"
    config.write_text(LSTM_DATES, encoding="utf-8")
    assert main(["train", str(config), f"--out_dir={tmp_path / 'run'}"]) == 0
    ckpt = tmp_path / "run" / "best.safetensors"
    assert isinstance(load_trained(ckpt, device="cpu").model, LSTMAttentionSeq2Seq)
    capsys.readouterr()
    assert main(["translate", str(ckpt), "4 July 1976", "--beam", "3", "--n-best", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["evaluate", str(ckpt), "--split", "valid", "--n", "4"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(LSTM_DATES.replace("d_embed: 16", "d_model: 16"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown key 'model.d_model'"):
        load_run_config(str(bad))


def test_the_lstm_language_model_recipe_shares_data_with_the_transformer_recipe():
    transformer, lstm = load_run_config("wikitext2"), load_run_config("wikitext2_lstm")
    assert (lstm.model.type, transformer.model.type) == ("lstm", "gpt")
    assert lstm.data == transformer.data
