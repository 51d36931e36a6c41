"""The offline vocabulary text encoder: tokens, null condition, persistence through the model folder spec."""

from __future__ import annotations

import pytest
import torch

from fluxbench import FluxbenchError
from fluxbench.models.fluxmusic.conditioner import build_conditioner
from fluxbench.models.fluxmusic.vocab_conditioner import VocabConditioner, words


def _encoder(**dims) -> VocabConditioner:
    torch.manual_seed(0)
    return VocabConditioner.from_captions(["A slow piano melody", "fast organ chords, 120 bpm"], **dims)


def test_words_and_token_ids():
    assert words("A Fast, loud-ish tune at 120 BPM!") == ["a", "fast", "loud", "ish", "tune", "at", "120", "bpm"]
    encoder = _encoder(max_tokens=4)
    assert encoder.vocabulary == sorted(["a", "slow", "piano", "melody", "fast", "organ", "chords", "120", "bpm"])
    ids = encoder.token_ids(["slow piano", "violin", "a slow piano melody fast", ""])
    index = {w: i + 2 for i, w in enumerate(encoder.vocabulary)}  # 0 = padding, 1 = unknown word
    assert ids[0].tolist() == [index["slow"], index["piano"], 0, 0]
    assert ids[1].tolist() == [1, 0, 0, 0]
    assert ids[2].tolist() == [index[w] for w in ("a", "slow", "piano", "melody")]  # cut at max_tokens
    assert ids[3].tolist() == [0, 0, 0, 0]


def test_encode_shapes_null_and_word_dependence():
    encoder = _encoder(context_dim=12, vector_dim=5, max_tokens=6)
    out = encoder.encode(["slow piano", "fast organ", "slow piano"])
    assert out.txt.shape == (3, 6, 12) and out.y.shape == (3, 5)
    torch.testing.assert_close(out.txt[0], out.txt[2])
    assert not torch.allclose(out.y[0], out.y[1])
    null = encoder.null(2)
    torch.testing.assert_close(null.y, encoder.null_vector.expand(2, -1))
    torch.testing.assert_close(null.txt[0], encoder.encode([""]).txt[0])
    # Gradients reach the word vectors: the encoder trains with the transformer.
    encoder.encode(["slow piano"]).y.sum().backward()
    assert encoder.token_embedding.weight.grad.abs().sum() > 0


def test_bag_of_words_pooling_reads_every_word_and_ignores_order_and_padding():
    encoder = _encoder(context_dim=12, vector_dim=5, max_tokens=8, pooling="bag-of-words")
    assert not hasattr(encoder, "pooled")  # no parameter that would get no gradient (DDP)
    captions = ["slow piano melody", "melody piano slow", "slow piano melody melody", "slow organ melody", ""]
    out = encoder.encode(captions)
    torch.testing.assert_close(out.y[0], out.y[1])  # a bag: word order does not matter
    torch.testing.assert_close(out.y[0], out.y[2])  # distinct words: repeating one changes nothing
    assert not torch.allclose(out.y[0], out.y[3])  # one word changed
    torch.testing.assert_close(out.y[4], encoder.null_vector)
    index = {w: i + 2 for i, w in enumerate(encoder.vocabulary)}
    weight = encoder.bag_projection.weight
    expected = weight[:, [index["slow"], index["piano"], index["melody"]]].sum(dim=1) * 4.0 / 3 ** 0.5
    torch.testing.assert_close(out.y[0], expected)
    # The pooled vector starts well above unit scale, so the transformer reads it from the first steps.
    assert out.y[0].square().mean().sqrt() > 2.0
    out.y[0].sum().backward()
    assert weight.grad[:, index["slow"]].abs().sum() > 0 and weight.grad[:, index["organ"]].abs().sum() == 0
    with pytest.raises(FluxbenchError, match="pooling 'max'"):
        _encoder(pooling="max")


@pytest.mark.parametrize("pooling", ["mean", "bag-of-words"])
def test_spec_and_weights_round_trip(tmp_path, pooling):
    encoder = _encoder(pooling=pooling)
    with torch.no_grad():
        encoder.null_vector.fill_(0.5)
    encoder.save(tmp_path)
    loaded = build_conditioner(encoder.spec(), tmp_path)
    assert isinstance(loaded, VocabConditioner) and loaded.pooling == pooling
    captions = ["slow piano melody", "an unknown phrase", ""]
    with torch.no_grad():
        a, b = encoder.encode(captions), loaded.encode(captions)
    torch.testing.assert_close(a.txt, b.txt, rtol=0, atol=0)
    torch.testing.assert_close(a.y, b.y, rtol=0, atol=0)


def test_persistence_errors(tmp_path):
    encoder = _encoder()
    with pytest.raises(FluxbenchError, match="conditioner.safetensors: missing"):
        VocabConditioner.from_spec(encoder.spec(), tmp_path)
    encoder.save(tmp_path)
    grown = {**encoder.spec(), "vocabulary": encoder.vocabulary + ["violin"]}
    with pytest.raises(FluxbenchError, match="does not fit the spec"):
        VocabConditioner.from_spec(grown, tmp_path)
    with pytest.raises(FluxbenchError, match="missing field 'max_tokens'"):
        VocabConditioner.from_spec({"kind": "vocab", "vocabulary": ["a"], "context_dim": 4, "vector_dim": 2})
    older = {k: v for k, v in encoder.spec().items() if k != "pooling"}  # written before pooling was a choice
    assert VocabConditioner.from_spec(older, tmp_path).pooling == "mean"
    with pytest.raises(FluxbenchError, match="no words"):
        VocabConditioner.from_captions(["", "!!"])
