"""Latent codecs and the AudioLDM 2 mel front-end.

The mel front-end is checked against librosa (the library AudioLDM 2's own TacotronSTFT builds its filterbank
with); the AudioLDM 2 codec against the raw diffusers / transformers models it wraps.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import torch

import tiny_hub
from fluxbench import FluxbenchError
from fluxbench.audio import audioldm2_normalize, mel_filterbank, mel_spectrogram
from fluxbench.models.fluxmusic.latent import AudioLDM2Codec, CodecError, MelCodec, build_codec, codec_weight_requests
from fluxbench.models.fluxmusic.transformer import patchify, unpatchify


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    tiny_hub.build_audioldm2(root)
    return root


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path / "cache"))
    for name in ("FLUXBENCH_WEIGHTS_DIR", "FLUXBENCH_AUDIOLDM2_VAE", "FLUXBENCH_AUDIOLDM2_VOCODER"):
        monkeypatch.delenv(name, raising=False)


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t) * (t % 0.5 < 0.25)
    return (tone + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


# ---- mel front-end --------------------------------------------------------------------------------------
def test_filterbank_matches_librosa_slaney():
    ours = mel_filterbank()
    reference = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0, htk=False, norm="slaney")
    assert ours.shape == (64, 513)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-8)


def test_log_mel_matches_an_independent_librosa_computation():
    wave = _music(1.3)
    magnitude = np.abs(librosa.stft(wave.astype(np.float64), n_fft=1024, hop_length=160, win_length=1024,
                                    window="hann", center=True, pad_mode="reflect"))
    reference = np.log(np.maximum(librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmax=8000.0) @ magnitude,
                                  1e-5)).T
    ours = mel_spectrogram(torch.from_numpy(wave)[None])[0].numpy()
    assert ours.shape == reference.shape == (len(wave) // 160 + 1, 64)
    np.testing.assert_allclose(ours, reference, atol=2e-4)


def test_mel_frames_follow_audioldm2_padding_and_floor():
    silence = torch.zeros(1, 1000)
    mel = mel_spectrogram(silence, frames=1024)  # 10.24 s at hop 160
    assert mel.shape == (1, 1024, 64)
    assert torch.allclose(mel, torch.full_like(mel, math.log(1e-5)))


def test_audioldm2_normalisation_removes_mean_and_sets_peak_half():
    wave = torch.tensor([[0.1, 0.3, -0.5, 0.9]]) + 2.0
    out = audioldm2_normalize(wave)
    assert abs(out.mean().item()) < 1e-6
    assert out.abs().max().item() == pytest.approx(0.5, rel=1e-6)


# ---- mel codec ------------------------------------------------------------------------------------------
def test_mel_codec_shapes_match_the_vae_latent_layout():
    codec = MelCodec()
    assert codec.latent_channels == 8 and codec.sample_rate == 16000
    assert codec.latent_shape(163840) == (8, 512, 16)  # 1024 frames folded 2 x 4
    for samples in (1, 16000, 33333):
        _, height, width = codec.latent_shape(samples)
        assert height % 2 == 0 and width % 2 == 0 and height * 2 * 160 >= samples


def test_mel_codec_fold_is_lossless_and_griffin_lim_restores_the_mel():
    codec = MelCodec(griffin_lim_iters=48)
    wave = torch.from_numpy(_music(1.28))[None]
    latent = codec.encode(wave)
    assert latent.shape == (1, *codec.latent_shape(wave.shape[-1]))
    frames = latent.shape[2] * codec.time_fold
    expected = mel_spectrogram(audioldm2_normalize(wave), frames=frames)
    torch.testing.assert_close(codec.log_mel(latent), expected, atol=1e-5, rtol=1e-5)
    decoded = codec.decode(latent)
    assert decoded.shape == (1, frames * 160) and torch.isfinite(decoded).all()
    again = mel_spectrogram(audioldm2_normalize(decoded), frames=frames)
    loud = expected > expected.mean()  # where the music is (the floor carries no phase information)
    error = (again - expected)[loud].abs().mean().item()
    assert error < 0.5, error
    # Decoding is deterministic (fixed starting phase).
    assert torch.equal(decoded, codec.decode(latent))


def test_mel_codec_spec_round_trip_and_bad_configs():
    codec = MelCodec(time_fold=4, freq_fold=2, griffin_lim_iters=8)
    rebuilt = build_codec(codec.spec())
    assert isinstance(rebuilt, MelCodec) and rebuilt.spec() == codec.spec() and rebuilt.latent_channels == 8
    with pytest.raises(CodecError, match="freq_fold"):
        MelCodec(freq_fold=3)
    with pytest.raises(CodecError, match="unknown kind"):
        build_codec({"kind": "wavelet"})
    with pytest.raises(CodecError, match="does not unfold"):
        MelCodec().decode(torch.zeros(1, 4, 8, 16))


def test_mel_codec_floor_clamps_only_below_it_and_is_recorded():
    wave = torch.from_numpy(_music(0.64))[None]
    wave[..., wave.shape[-1] // 2:] = 0.0  # silence: the log-mel sits at AudioLDM 2's floor, log 1e-5
    plain, floored = MelCodec(normalize=False), MelCodec(normalize=False, floor=-8.0)
    full, clamped = plain.log_mel(plain.encode(wave)), floored.log_mel(floored.encode(wave))
    assert full.min().item() < -11 and clamped.min().item() == pytest.approx(-8.0, abs=1e-5)
    above = full > -8.0
    assert above.any() and (~above).any()
    torch.testing.assert_close(clamped[above], full[above], atol=1e-5, rtol=0)
    assert build_codec(floored.spec()).floor == -8.0
    assert "floor" not in plain.spec()  # folders written without one keep their exact spec
    with pytest.raises(CodecError, match="floor must be a finite log-mel value"):
        MelCodec(floor=float("nan"))


@pytest.mark.parametrize("pool", [2, 4])  # 4 is the demo's
def test_mel_codec_frame_pool_averages_frames_and_decodes_to_full_length(pool):
    wave = torch.from_numpy(_music(1.28))[None]
    plain, pooled = MelCodec(normalize=False), MelCodec(normalize=False, frame_pool=pool)
    assert pooled.latent_shape(wave.shape[-1])[1] * pool == plain.latent_shape(wave.shape[-1])[1]
    full = plain.log_mel(plain.encode(wave))  # [1, frames, 64]
    pooled_mel = pooled.log_mel(pooled.encode(wave))
    # each pooled frame is the mean of its `pool` log-mel frames, computed independently here
    torch.testing.assert_close(pooled_mel, sum(full[:, k::pool] for k in range(pool)) / pool, atol=1e-5, rtol=1e-5)
    decoded = pooled.decode(pooled.encode(wave))
    assert decoded.shape == (1, full.shape[1] * 160) and torch.isfinite(decoded).all()
    again = mel_spectrogram(decoded, frames=full.shape[1])
    loud = full > full.mean()
    # the test tone is gated every 250 ms, so pooling blurs only its edges: against the plain codec's 0.16, the
    # error is 0.21 with pairs and 0.28 with fours, where the same decode 40 ms late gives 0.62-0.65
    pooled_error = (again - full)[loud].abs().mean().item()
    plain_again = mel_spectrogram(plain.decode(plain.encode(wave)), frames=full.shape[1])
    assert pooled_error < 0.6
    assert pooled_error < (plain_again - full)[loud].abs().mean().item() + 0.05 * pool
    assert build_codec(pooled.spec()).frame_pool == pool
    assert "frame_pool" not in plain.spec()
    with pytest.raises(CodecError, match="frame_pool"):
        MelCodec(frame_pool=0)


# ---- AudioLDM 2 VAE + vocoder ---------------------------------------------------------------------------
def test_audioldm2_codec_latent_is_8_x_256_x_16_for_10_24_s(hub):
    codec = AudioLDM2Codec.load(weights_dir=hub)
    assert codec.sample_rate == 16000 and codec.latent_channels == 8
    assert codec.latent_shape(163840) == (8, 256, 16)
    tokens = patchify(torch.zeros(1, *codec.latent_shape(163840)))
    assert tokens.shape == (1, 1024, 32)  # 128 x 8 patches of 32 values, as the paper


def test_audioldm2_codec_matches_the_raw_models(hub):
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan

    codec = AudioLDM2Codec.load(weights_dir=hub)
    vae = AutoencoderKL.from_pretrained(str(hub / "audioldm2" / "vae")).eval()
    vocoder = SpeechT5HifiGan.from_pretrained(str(hub / "audioldm2" / "vocoder")).eval()
    wave = torch.from_numpy(np.stack([_music(0.64, 1), _music(0.64, 2)]))
    with torch.no_grad():
        latent = codec.encode(wave)
        mel = mel_spectrogram(audioldm2_normalize(wave), frames=64)[:, None]
        expected_latent = vae.encode(mel).latent_dist.mean * vae.config.scaling_factor
        torch.testing.assert_close(latent, expected_latent)
        decoded = codec.decode(latent)
        expected_wave = vocoder(vae.decode(latent / vae.config.scaling_factor).sample[:, 0])
    torch.testing.assert_close(decoded, expected_wave)
    assert decoded.shape[0] == 2 and decoded.shape[1] >= 64 * 160 and torch.isfinite(decoded).all()
    assert codec.spec() == {"kind": "audioldm2", "repo": "cvssp/audioldm2"}


def test_audioldm2_codec_through_spec_env_and_explicit_paths(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("FLUXBENCH_AUDIOLDM2_VAE", str(hub / "audioldm2" / "vae"))
    monkeypatch.setenv("FLUXBENCH_AUDIOLDM2_VOCODER", str(hub / "audioldm2" / "vocoder"))
    assert isinstance(build_codec({"kind": "audioldm2"}), AudioLDM2Codec)
    monkeypatch.delenv("FLUXBENCH_AUDIOLDM2_VAE")
    monkeypatch.delenv("FLUXBENCH_AUDIOLDM2_VOCODER")
    spec = {"kind": "audioldm2", "repo": "cvssp/audioldm2-music", "vae": str(hub / "audioldm2" / "vae"),
            "vocoder": str(hub / "audioldm2" / "vocoder")}
    codec = build_codec(spec)
    assert codec.spec() == spec
    assert [s.hub_repo for s, _ in codec_weight_requests(spec)] == ["cvssp/audioldm2-music"] * 2


def test_audioldm2_codec_missing_weights_names_both_parts(tmp_path):
    with pytest.raises(FluxbenchError) as error:
        AudioLDM2Codec.load(weights_dir=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "hf://cvssp/audioldm2/vae" in message and "hf://cvssp/audioldm2/vocoder" in message
    assert "FLUXBENCH_AUDIOLDM2_VAE" in message and str(tmp_path / "audioldm2" / "vocoder") in message


def test_patchify_round_trip_on_codec_latents():
    latent = torch.randn(2, *MelCodec().latent_shape(16000))
    assert torch.equal(unpatchify(patchify(latent), latent.shape[2], latent.shape[3]), latent)
