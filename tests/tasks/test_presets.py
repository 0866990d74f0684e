import pytest

from tformer.tasks.runs import load_run_config, preset_names


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
