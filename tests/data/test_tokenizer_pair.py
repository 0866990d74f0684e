import pytest

from tformer.data.tokenizers import TokenizerPair, train_char_tokenizer


def test_joint_pair_round_trips_as_one_tokenizer():
    pair = TokenizerPair.joint(train_char_tokenizer(["abc", "xyz"]))
    assert pair.is_joint
    restored = TokenizerPair.from_json(pair.to_json())
    assert restored.is_joint
    assert restored.source.encode("cab") == pair.source.encode("cab")


def test_separate_pair_keeps_both_vocabularies():
    pair = TokenizerPair(train_char_tokenizer(["abc"]), train_char_tokenizer(["xyz"]))
    restored = TokenizerPair.from_json(pair.to_json())
    assert not restored.is_joint
    assert restored.source.encode("abc") == pair.source.encode("abc")
    assert restored.target.encode("zyx") == pair.target.encode("zyx")
    assert restored.source.encode("x") == [restored.source.unk_id]


@pytest.mark.parametrize("text", ["", "[]", '{"source": 1}', "not json"])
def test_malformed_json_is_a_clear_error(text):
    with pytest.raises((ValueError, TypeError)):
        TokenizerPair.from_json(text)
