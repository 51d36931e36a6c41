"""Metric front-ends against independent computations; tiny random backbones through the real weight loaders."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from fluxbench.audio import write_wav
from fluxbench.protocols.metrics.backbones import BackboneError, read_state_dict
from fluxbench.protocols.metrics.backbones.panns import CNN14_CONFIGS, Cnn14Backbone, build_cnn14
from fluxbench.protocols.metrics.backbones.vggish import (VGGishBackbone, VGGishConfig, build_vggish,
                                                          log_mel_examples)
from fluxbench.protocols.metrics.clips import pairing
from fluxbench.protocols.metrics.frontend import MIN_SAMPLES, reference_waveform, sinc_resample


# ---- resampler --------------------------------------------------------------------------------------------
def _direct_sinc(x: np.ndarray, orig_rate: int, new_rate: int, width: int = 6, rolloff: float = 0.99):
    """y_j = sum_i x_i k(i/o - j/n), k(u) = (f/o) sinc(pi f u) cos^2(pi f u / 2W) on |f u| < W (float64 loops)."""
    common = math.gcd(orig_rate, new_rate)
    o, n = orig_rate // common, new_rate // common
    f = min(o, n) * rolloff
    out = np.zeros(math.ceil(n * len(x) / o))
    sources = np.arange(len(x))
    for j in range(out.size):
        t = f * (sources / o - j / n)
        inside = np.abs(t) < width
        t = t[inside]
        sinc = np.where(t == 0, 1.0, np.sin(np.pi * t) / np.where(t == 0, 1.0, np.pi * t))
        out[j] = np.sum(x[inside] * sinc * np.cos(np.pi * t / (2 * width)) ** 2) * f / o
    return out


@pytest.mark.parametrize("orig, new", [(48000, 16000), (22050, 16000), (16000, 32000), (44100, 48000)])
def test_resampler_is_the_windowed_sinc_formula(orig, new):
    x = np.random.default_rng(orig + new).standard_normal(orig // 50)
    np.testing.assert_allclose(sinc_resample(x, orig, new), _direct_sinc(x, orig, new), atol=1e-12)
    as_float32 = sinc_resample(x.astype(np.float32), orig, new)
    assert as_float32.dtype == np.float32
    # float32 audio gets a float32 kernel, as in the reference: tap times carry ~1e-7 relative rounding
    np.testing.assert_allclose(as_float32, _direct_sinc(x, orig, new), atol=1e-4)


def test_resampler_keeps_a_band_limited_tone():
    seconds, tone = 0.5, 1000.0
    x = np.sin(2 * np.pi * tone * np.arange(int(48000 * seconds)) / 48000)
    y = sinc_resample(x, 48000, 16000)
    expected = np.sin(2 * np.pi * tone * np.arange(y.size) / 16000)
    interior = slice(200, -200)  # away from the zero-padded edges
    assert np.max(np.abs(y[interior] - expected[interior])) < 2e-3
    high = np.sin(2 * np.pi * 12000 * np.arange(int(48000 * seconds)) / 48000)  # above the new Nyquist
    assert np.max(np.abs(sinc_resample(high, 48000, 16000)[interior])) < 2e-3


def test_reference_front_end_first_channel_dc_resample_pad(tmp_path):
    rate = 48000
    t = np.arange(rate // 2) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.1  # DC offset
    right = 0.5 * np.sin(2 * np.pi * 300 * t)
    write_wav(tmp_path / "stereo.wav", np.stack([left, right]), rate)
    wave = reference_waveform(tmp_path / "stereo.wav", 16000)
    stored = sf.read(tmp_path / "stereo.wav", dtype="float64")[0][:, 0]  # the 16-bit samples of channel 0
    expected = _direct_sinc(stored - stored.mean(), rate, 16000)
    assert wave.shape == (MIN_SAMPLES,) and wave.dtype == np.float32
    np.testing.assert_allclose(wave[:expected.size], expected, atol=1e-4)
    assert not wave[expected.size:].any()  # zero padding to 2 s, at the end


def test_pairing_follows_the_99_percent_rule():
    names = [f"{i}.wav" for i in range(200)]
    assert pairing(names[:100], names[:99]).paired is False  # 99/100 is not more than 99 %
    assert pairing(names, names[:199]).paired is True  # 199/200 is
    assert pairing(["a.wav"], ["a.flac"]).paired is False  # the extension is part of the name


# ---- VGGish -----------------------------------------------------------------------------------------------
def _independent_vggish_log_mel(wave: np.ndarray) -> np.ndarray:
    """The AudioSet VGGish front-end re-derived with explicit loops (periodic Hann, HTK mel, log(x + 0.01))."""
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * k / 400) for k in range(400)])
    frames = [wave[s:s + 400] * window for s in range(0, len(wave) - 399, 160)]
    spectrum = np.abs(np.fft.rfft(np.array(frames), 512))
    hz = np.arange(257) * 8000.0 / 256
    mel = [1127.0 * math.log(1 + f / 700.0) for f in hz]
    edges = np.linspace(1127.0 * math.log(1 + 125 / 700.0), 1127.0 * math.log(1 + 7500 / 700.0), 66)
    bank = np.zeros((257, 64))
    for band in range(64):
        low, centre, high = edges[band:band + 3]
        for b in range(1, 257):  # the DC bin carries no weight
            if low < mel[b] <= centre:
                bank[b, band] = (mel[b] - low) / (centre - low)
            elif centre < mel[b] < high:
                bank[b, band] = (high - mel[b]) / (high - centre)
    log_mel = np.log(spectrum @ bank + 0.01)
    count = len(log_mel) // 96
    return log_mel[:count * 96].reshape(count, 96, 64)


def test_vggish_log_mel_matches_an_independent_derivation():
    wave = np.random.default_rng(0).standard_normal(16000 * 3 + 777) * 0.1
    ours = log_mel_examples(wave)
    reference = _independent_vggish_log_mel(wave)
    assert ours.shape == reference.shape == (3, 96, 64)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert log_mel_examples(np.zeros(15000)).shape == (0, 96, 64)  # under 0.96 s: no example


TINY_VGGISH = VGGishConfig(widths=(4, 4, 8, 8, 8, 8), hidden=16, embedding=8)


def _randomised(module, seed: int):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
    return module


def save_tiny_vggish(path, seed: int = 0):
    net = _randomised(build_vggish(TINY_VGGISH), seed)
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    else:
        torch.save(net.state_dict(), path)
    return net


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_tiny_vggish_round_trips_through_the_loader(tmp_path, suffix):
    original = save_tiny_vggish(tmp_path / f"tiny{suffix}")
    backbone = VGGishBackbone.from_weights(tmp_path / f"tiny{suffix}")
    waves = [np.random.default_rng(1).standard_normal(32000).astype(np.float32) * 0.1,
             np.random.default_rng(2).standard_normal(16000 * 5).astype(np.float32) * 0.1]
    frames = [out["frames"] for out in backbone.embed(waves)]
    assert [f.shape for f in frames] == [(2, 8), (5, 8)]
    with torch.no_grad():
        direct = original(torch.from_numpy(log_mel_examples(waves[1]))[:, None]).numpy()
    np.testing.assert_allclose(frames[1], direct, rtol=1e-5, atol=1e-6)
    assert (frames[1] < 0).any()  # pre-activation: the last ReLU is not applied
    assert backbone.weights_sha256 and "vggish" in backbone.fingerprint


def test_vggish_loader_errors(tmp_path):
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(BackboneError, match="not VGGish weights .*missing embeddings"):
        VGGishBackbone.from_weights(tmp_path / "other.pth")
    save_tiny_vggish(tmp_path / "vggish-10086976.pth")  # the release name with other contents
    with pytest.raises(BackboneError, match="does not match the release file"):
        VGGishBackbone.from_weights(tmp_path / "vggish-10086976.pth")
    torch.save({"model": {"layer": object()}}, tmp_path / "pickled.pth")  # arbitrary objects are refused
    with pytest.raises(BackboneError, match="cannot read VGGish weights"):
        read_state_dict(tmp_path / "pickled.pth", "VGGish")


# ---- PANNs CNN14 ------------------------------------------------------------------------------------------
def save_tiny_cnn14(path, seed: int = 0):
    from dataclasses import replace

    config = replace(CNN14_CONFIGS["panns-16k"], widths=(4, 4, 8, 8, 8, 16), classes=5)
    net = build_cnn14(config)
    real, imag = net.spectrogram_extractor.stft.conv_real.weight.clone(), net.logmel_extractor.melW.clone()
    _randomised(net, seed)
    with torch.no_grad():  # keep the fixed front-end; everything learnable is random
        net.spectrogram_extractor.stft.conv_real.weight.copy_(real)
        net.spectrogram_extractor.stft.conv_imag.weight.copy_(build_cnn14(config).spectrogram_extractor.stft.conv_imag.weight)
        net.logmel_extractor.melW.copy_(imag)
        for name, module in net.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.abs_().add_(0.5)
    torch.save({"model": net.state_dict(), "iteration": 0}, path)
    return net


def test_cnn14_log_mel_matches_librosa():
    librosa = pytest.importorskip("librosa")
    net = build_cnn14(CNN14_CONFIGS["panns-16k"])
    wave = np.random.default_rng(3).standard_normal(16000).astype(np.float32) * 0.2
    with torch.no_grad():
        ours = net.log_mel(torch.from_numpy(wave)[None])[0, 0].numpy()
    power = np.abs(librosa.stft(wave.astype(np.float64), n_fft=512, hop_length=160, window="hann", center=True,
                                pad_mode="reflect")) ** 2
    bank = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=50, fmax=8000)
    reference = 10 * np.log10(np.maximum(bank @ power, 1e-10)).T
    assert ours.shape == reference.shape == (101, 64)
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_tiny_cnn14_round_trips_and_batches_exactly(tmp_path):
    original = save_tiny_cnn14(tmp_path / "tiny_cnn14.pth")
    backbone = Cnn14Backbone.from_weights("panns-16k", tmp_path / "tiny_cnn14.pth")
    rng = np.random.default_rng(4)
    waves = [rng.standard_normal(32000).astype(np.float32) * 0.1 for _ in range(3)]
    waves.append(rng.standard_normal(40000).astype(np.float32) * 0.1)
    together = backbone.embed(waves)
    alone = [backbone.embed([w])[0] for w in waves]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a["embedding"], b["embedding"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-5, atol=1e-6)
    assert together[0]["embedding"].shape == (16,) and together[0]["logits"].shape == (5,)
    assert (together[0]["embedding"] >= 0).all()  # fc1 after ReLU
    with torch.no_grad():
        embedding, logits = original.eval()(torch.from_numpy(waves[3])[None])
    np.testing.assert_allclose(together[3]["logits"], logits[0].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(BackboneError, match="other rate"):
        Cnn14Backbone.from_weights("panns-32k", tmp_path / "tiny_cnn14.pth")


# ---- CLAP -------------------------------------------------------------------------------------------------
def save_tiny_clap(folder, text_vocab: int | None = None):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<s>", "</s>", "<unk>", "calm", "piano", "loud", "drums", "a", "song", "with", "slow"]
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>",
                                                eos_token="</s>", unk_token="<unk>")
    config = transformers.ClapConfig(
        text_config=dict(vocab_size=text_vocab or len(words), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=40, pad_token_id=0),
        audio_config=dict(patch_embeds_hidden_size=8, hidden_size=16, depths=[1, 1], num_attention_heads=[2, 2],
                          window_size=4, enable_fusion=False),
        projection_dim=8)
    torch.manual_seed(0)
    transformers.ClapModel(config).save_pretrained(folder)
    transformers.ClapFeatureExtractor().save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_tiny_clap_round_trips_and_is_deterministic(tmp_path):
    from fluxbench.protocols.metrics.backbones.clap import ClapBackbone

    backbone = ClapBackbone.from_pretrained(save_tiny_clap(tmp_path / "clap"))
    rng = np.random.default_rng(5)
    short = rng.standard_normal(48000 * 3).astype(np.float32) * 0.1
    long = rng.standard_normal(48000 * 23).astype(np.float32) * 0.1
    first = backbone.embed([short, long])
    again = backbone.embed([short, long])
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["audio"], b["audio"])  # no random crop of the 23 s clip
        assert a["audio"].shape == (8,) and np.linalg.norm(a["audio"]) == pytest.approx(1.0)
    np.testing.assert_allclose(first[1]["audio"], backbone.embed([long[:480000]])[0]["audio"], atol=1e-6)
    text = backbone.embed_text(["calm piano", "loud drums song"])
    assert text.shape == (2, 8) and not np.allclose(text[0], text[1])
    windows = ClapBackbone.from_pretrained(tmp_path / "clap", long_clips="mean").embed([long])[0]["audio"]
    assert not np.allclose(windows, first[1]["audio"])  # the mean of three windows, not the first one


def test_clap_refuses_a_degenerate_tokenizer(tmp_path):
    from fluxbench.protocols.metrics.backbones.clap import ClapBackbone

    save_tiny_clap(tmp_path / "clap", text_vocab=500)  # the text model expects far more tokens
    with pytest.raises(BackboneError, match="tokenizer has 12 tokens but the text model expects 500"):
        ClapBackbone.from_pretrained(tmp_path / "clap")


def test_cnn14_with_folded_batch_norms_matches_the_checkpoint_layout():
    from dataclasses import replace

    config = replace(CNN14_CONFIGS["panns-16k"], widths=(8, 8, 16, 16, 32, 32), classes=7)
    net = _randomised(build_cnn14(config), 5)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # statistics far from the identity map
                module.running_var.abs_().add_(0.2)
                module.running_mean.mul_(3.0)
    waves = torch.from_numpy(np.random.default_rng(6).standard_normal((3, 24000)).astype(np.float32) * 0.1)
    with torch.inference_mode():
        embedding, logits = net(waves)
        folded = copy.deepcopy(net).fold_batch_norms()
        folded_embedding, folded_logits = folded(waves)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.conv_block1.modules())
    assert embedding.abs().max() > 0.1  # a non-trivial output to compare
    for ours, theirs in ((folded_embedding, embedding), (folded_logits, logits)):
        assert (ours - theirs).abs().max() <= 1e-6 * theirs.abs().max()
