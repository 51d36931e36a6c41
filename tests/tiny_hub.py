"""Tiny randomly initialised stand-ins for the hub components of FluxMusic, laid out like the hub repos.

Each builder makes a model from an in-code config that keeps the real one's structure (T5 v1.1 gated-GELU
encoder, CLAP with a RoBERTa text tower and an HTSAT audio tower, the AudioLDM 2 mono mel VAE with 8 latent
channels, the 16 kHz HiFi-GAN with upsampling 5 x 4 x 2 x 2 x 2 = hop 160), only narrower and shallower, and
writes it with `save_pretrained` where the real weights would be: `<root>/<repo name>/<subfolder>`, which is
the layout `fluxbench.weights` looks up under a weights directory. Tokenizers are built offline from a small
vocabulary.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# Tiny FluxMusic ("tiny" size) reads context_in_dim 48 and vec_in_dim 32.
T5_WIDTH = 48
CLAP_WIDTH = 32
WORDS = ("a calm piano melody with soft strings upbeat electronic dance track drums bass guitar low quality "
         "gentle jazz trio relaxing ambient synth pad rock song energetic").split()


def _t5_tokenizer():
    from transformers import T5Tokenizer

    # Unigram pieces: specials at the T5 ids (pad 0, eos 1, unk 2), then words and single letters.
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -1.0) for word in sorted(set(WORDS))]
    pieces += [(letter, -5.0) for letter in "abcdefghijklmnopqrstuvwxyz,."]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_t5(root: str | os.PathLike, layout: str = "sd3", seed: int = 0) -> Path:
    """T5 encoder + tokenizer. layout "sd3": stable-diffusion-3-medium-diffusers/{text_encoder_3,tokenizer_3}
    (the default source); "google": t5-v1_1-xxl/ with both in one folder."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = _t5_tokenizer()
    config = T5Config(vocab_size=len(tokenizer), d_model=T5_WIDTH, d_kv=12, d_ff=96, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                      is_encoder_decoder=False, use_cache=False)
    torch.manual_seed(seed)
    model = T5EncoderModel(config).eval()
    if layout == "sd3":
        repo = Path(root) / "stable-diffusion-3-medium-diffusers"
        model.save_pretrained(repo / "text_encoder_3")
        tokenizer.save_pretrained(repo / "tokenizer_3")
    elif layout == "google":
        repo = Path(root) / "t5-v1_1-xxl"
        model.save_pretrained(repo)
        tokenizer.save_pretrained(repo)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return repo


def _byte_level_vocabulary() -> dict[str, int]:
    # GPT-2 / RoBERTa byte-to-character table: printable bytes map to themselves, the rest to 256 + n.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    characters, extra = [], 0
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + extra))
            extra += 1
    vocabulary = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
    for character in characters:
        vocabulary.setdefault(character, len(vocabulary))
    return vocabulary


def build_clap(root: str | os.PathLike, seed: int = 1) -> Path:
    """CLAP (RoBERTa text tower of width 32, tiny HTSAT audio tower) + processor at larger_clap_music/."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocabulary = _byte_level_vocabulary()
    tokenizer = RobertaTokenizer(vocab=vocabulary, merges=[])
    text = dict(vocab_size=len(vocabulary), hidden_size=CLAP_WIDTH, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=300, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, pad_token_id=1)
    audio = dict(hidden_size=32, patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[2, 2],
                 window_size=4, spec_size=64, num_mel_bins=16, enable_fusion=False)
    torch.manual_seed(seed)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16)).eval()
    repo = Path(root) / "larger_clap_music"
    model.save_pretrained(repo)
    ClapProcessor(feature_extractor=ClapFeatureExtractor(feature_size=16), tokenizer=tokenizer).save_pretrained(repo)
    return repo


def build_audioldm2(root: str | os.PathLike, repo_name: str = "audioldm2", seed: int = 2,
                    scaling_factor: float = 0.6) -> Path:
    """AudioLDM 2 VAE (mono mel in/out, 8 latent channels, time and frequency halved twice) and the 16 kHz
    HiFi-GAN vocoder (64 mel bins, hop 160) at <repo_name>/vae and <repo_name>/vocoder."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(8, 16, 16),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=4, sample_size=256, scaling_factor=scaling_factor)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=32, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False, initializer_range=0.3))
    repo = Path(root) / repo_name
    vae.save_pretrained(repo / "vae")
    vocoder.save_pretrained(repo / "vocoder")
    return repo


def build_fluxmusic_checkpoint(path: str | os.PathLike, size: str = "tiny", seed: int = 3) -> Path:
    """A randomly initialised transformer of `size` saved in the official {"ema": ...} .pt layout."""
    from fluxbench.models.fluxmusic import FluxMusicTransformer, get_config
    from fluxbench.models.fluxmusic.checkpoint import save_official

    torch.manual_seed(seed)
    model = FluxMusicTransformer(get_config(size))
    # Perturb every weight so no layer (e.g. zero-initialised modulation) is inert.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return save_official(path, model.state_dict())


def build_hub(root: str | os.PathLike) -> Path:
    """Every component of the default FluxMusic setup under one weights directory."""
    root = Path(root)
    build_t5(root)
    build_clap(root)
    build_audioldm2(root)
    build_fluxmusic_checkpoint(root / "FluxMusic" / "musicflow_tiny.pt")
    return root


def build_model_folder(folder: str | os.PathLike, codec: dict | None = None, seed: int = 3) -> Path:
    """A trained-model folder holding the tiny transformer, conditioned by the (tiny) hub T5 + CLAP and
    decoded by the AudioLDM 2 codec (or `codec`), both resolved through the weights directory."""
    from fluxbench.models.fluxmusic import FluxMusicTransformer, get_config
    from fluxbench.models.fluxmusic.checkpoint import save_model_folder

    torch.manual_seed(seed)
    model = FluxMusicTransformer(get_config("tiny"))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    spec = {"name": "tiny-fluxmusic", "objective": "rectified_flow", "conditioner": {"kind": "t5-clap"},
            "codec": codec or {"kind": "audioldm2"}}
    return save_model_folder(folder, model, spec)


def build_mert(root: str | os.PathLike, seed: int = 4) -> Path:
    """MERT-v1-95M's hub layout at MERT-v1-95M/: a HuBERT-shaped model (conv feature encoder, 2 transformer
    layers of width 32, total stride 80 at 24 kHz) saved with MERT's config keys (model_type mert_model, no CQT,
    no attention relaxation) and its Wav2Vec2 feature extractor (normalising, 24 kHz)."""
    import json

    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(8, 8, 8), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4), num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=2, feat_extract_norm="group", do_stable_layer_norm=False,
                          hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0)
    torch.manual_seed(seed)
    model = HubertModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    repo = Path(root) / "MERT-v1-95M"
    model.save_pretrained(repo)
    settings = json.loads((repo / "config.json").read_text())
    settings.update({"model_type": "mert_model", "architectures": ["MERTModel"], "feature_extractor_cqt": False,
                     "attention_relax": -1.0, "sample_rate": 24000, "deepnorm": False,
                     "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig",
                                  "AutoModel": "modeling_MERT.MERTModel"}})
    (repo / "config.json").write_text(json.dumps(settings, indent=2))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(repo)
    return repo


def build_encodec(root: str | os.PathLike, seed: int = 5) -> Path:
    """EnCodec 24 kHz mono (transformers layout of facebook/encodec_24khz) at encodec_24khz/: a narrow SEANet
    encoder/decoder (4 filters, hidden 16, strides 4 x 2 = hop 8)."""
    from transformers import EncodecConfig, EncodecModel

    config = EncodecConfig(sampling_rate=24000, audio_channels=1, hidden_size=16, num_filters=4,
                           upsampling_ratios=[4, 2], num_lstm_layers=1, codebook_size=16, target_bandwidths=[1.5])
    torch.manual_seed(seed)
    model = EncodecModel(config).eval()
    repo = Path(root) / "encodec_24khz"
    model.save_pretrained(repo)
    return repo
