"""T5 + CLAP text conditioning on tiny hub-shaped encoders; null/negative embedding disk cache."""

from __future__ import annotations

import pytest
import torch

import tiny_hub
from fluxbench import FluxbenchError
from fluxbench.models.fluxmusic.conditioner import ConditionerError, T5ClapConditioner, TextConditioning, \
    build_conditioner

CAPTIONS = ["a calm piano melody with soft strings", "upbeat electronic dance track"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    tiny_hub.build_t5(root)
    tiny_hub.build_clap(root)
    return root


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("FLUXBENCH_WEIGHTS_DIR", "FLUXBENCH_T5", "FLUXBENCH_CLAP", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)


def _reference(hub, captions, t5_length=256, clap_length=256):
    """The official recipe, written out with the raw transformers classes: pad to max length, no mask."""
    from transformers import AutoTokenizer, ClapModel, T5EncoderModel

    sd3 = hub / "stable-diffusion-3-medium-diffusers"
    t5_tokens = AutoTokenizer.from_pretrained(str(sd3 / "tokenizer_3"))(
        captions, padding="max_length", max_length=t5_length, truncation=True, return_tensors="pt").input_ids
    clap_dir = str(hub / "larger_clap_music")
    clap_tokens = AutoTokenizer.from_pretrained(clap_dir)(
        captions, padding="max_length", max_length=clap_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        txt = T5EncoderModel.from_pretrained(str(sd3 / "text_encoder_3")).eval()(input_ids=t5_tokens).last_hidden_state
        y = ClapModel.from_pretrained(clap_dir).eval().text_model(input_ids=clap_tokens).pooler_output
    return txt, y


def test_encode_is_t5_last_hidden_state_and_clap_pooled_output(hub):
    conditioner = T5ClapConditioner(weights_dir=hub)
    assert (conditioner.context_dim, conditioner.vector_dim, conditioner.max_tokens) == (48, 32, 256)
    encoded = conditioner.encode(CAPTIONS)
    txt, y = _reference(hub, CAPTIONS)
    assert encoded.txt.shape == (2, 256, 48) and encoded.y.shape == (2, 32)
    torch.testing.assert_close(encoded.txt, txt)
    torch.testing.assert_close(encoded.y, y)
    # The two captions really differ in both slots (the encoders see the text).
    assert not torch.allclose(encoded.txt[0], encoded.txt[1]) and not torch.allclose(encoded.y[0], encoded.y[1])


def test_null_and_negative_embeddings_are_cached_and_reused_without_encoders(hub, tmp_path):
    conditioner = T5ClapConditioner(weights_dir=hub)
    null = conditioner.null(3)
    assert null.txt.shape == (3, 256, 48) and torch.equal(null.txt[0], null.txt[2])
    torch.testing.assert_close(null.txt[:1], conditioner._encode_t5([""]))
    negative = conditioner.negative("low quality, gentle", 2)
    assert conditioner.cache_path("").is_file() and conditioner.cache_path("low quality, gentle").is_file()

    # A later run that leaves both encoders out (and cannot even find their weights) still has them.
    blind = T5ClapConditioner(use_t5=False, use_clap=False, weights_dir=tmp_path / "empty",
                              context_dim=48, vector_dim=32)
    assert blind.weight_requests() == []
    torch.testing.assert_close(blind.null(3).txt, null.txt)
    torch.testing.assert_close(blind.negative("low quality, gentle", 2).y, negative.y)
    with pytest.raises(ConditionerError, match="not cached yet"):
        blind.negative("never seen", 1)


def test_left_out_encoder_slot_gets_the_null_embedding(hub):
    full = T5ClapConditioner(weights_dir=hub)
    full.null(1)  # stored once
    no_t5 = T5ClapConditioner(weights_dir=hub, use_t5=False, context_dim=48)
    encoded = no_t5.encode(CAPTIONS)
    reference = full.encode(CAPTIONS)
    torch.testing.assert_close(encoded.txt, full.null(2).txt)
    torch.testing.assert_close(encoded.y, reference.y)
    no_clap = T5ClapConditioner(weights_dir=hub, use_clap=False)
    encoded = no_clap.encode(CAPTIONS)
    torch.testing.assert_close(encoded.txt, reference.txt)
    torch.testing.assert_close(encoded.y, full.null(2).y)


def test_training_convention_masks_padding_and_cuts_clap(hub):
    conditioner = T5ClapConditioner(weights_dir=hub, attention_mask=True, clap_max_tokens=77)
    encoded = conditioner.encode(CAPTIONS)
    plain = T5ClapConditioner(weights_dir=hub).encode(CAPTIONS)
    assert encoded.txt.shape == (2, 256, 48)
    assert not torch.allclose(encoded.y, plain.y)  # the mask changes what the pooled token attends to


def test_google_layout_and_explicit_path(hub, tmp_path):
    google = tiny_hub.build_t5(tmp_path, layout="google")
    conditioner = T5ClapConditioner(t5=str(google), weights_dir=hub)
    txt = conditioner.encode(CAPTIONS[:1]).txt
    torch.testing.assert_close(txt, T5ClapConditioner(weights_dir=hub).encode(CAPTIONS[:1]).txt)
    assert conditioner.spec()["t5"] == str(google)
    assert conditioner.identity()["t5"].startswith("sha256:")


def test_spec_round_trip_release_and_dispatch(hub):
    conditioner = T5ClapConditioner(weights_dir=hub, max_tokens=64)
    rebuilt = build_conditioner(conditioner.spec(), None, weights_dir=hub)
    assert isinstance(rebuilt, T5ClapConditioner) and rebuilt.spec() == conditioner.spec()
    first = rebuilt.encode(CAPTIONS[:1])
    assert first.txt.shape == (1, 64, 48)
    rebuilt.release()
    assert rebuilt._t5 is None and rebuilt._clap is None
    torch.testing.assert_close(rebuilt.encode(CAPTIONS[:1]).txt, first.txt)  # loads again on demand
    with pytest.raises(ConditionerError, match="unknown kind"):
        build_conditioner({"kind": "bert"})
    with pytest.raises(ConditionerError, match="unknown field"):
        build_conditioner({"kind": "t5-clap", "max_length": 3})


def test_missing_encoders_are_listed_together(tmp_path):
    conditioner = T5ClapConditioner(weights_dir=tmp_path)
    with pytest.raises(FluxbenchError) as error:
        from fluxbench import weights

        weights.resolve_all(conditioner.weight_requests(), tmp_path)
    message = str(error.value)
    assert "hf://stabilityai/stable-diffusion-3-medium-diffusers" in message
    assert "hf://laion/larger_clap_music" in message and "FLUXBENCH_CLAP" in message


def test_text_conditioning_helpers():
    part = TextConditioning(torch.randn(1, 4, 3), torch.randn(1, 2))
    both = TextConditioning.cat([part, part.expand(2)])
    assert len(both) == 3 and torch.equal(both[1:2].txt, part.txt)
