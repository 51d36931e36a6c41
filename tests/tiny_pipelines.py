"""Tiny randomly initialised baseline checkpoints, built from in-code configs and saved like their hub repos.

Each builder keeps the real checkpoint's structure (component classes, how they connect, the native sample
rate and channel count) with widths, depths and vocabularies shrunk so a whole generation takes about a
second on a CPU, and writes it with `save_pretrained` to `<root>/<repo name>`: the layout `fluxbench.weights`
looks up under a weights directory. Tokenizers are built offline from a small word list.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

WORDS = ("a calm piano melody with soft strings upbeat electronic dance track drums bass guitar jazz trio "
         "relaxing ambient synth pad rock song energetic low quality").split()


# ---- tokenizers --------------------------------------------------------------------------------------------
def t5_tokenizer():
    """A unigram T5 tokenizer: pad 0, eos 1, unk 2 (the T5 ids), then whole words and single letters."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + word, -1.0) for word in sorted(set(WORDS))]
    pieces += [(letter, -5.0) for letter in "abcdefghijklmnopqrstuvwxyz,."]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=64)


def roberta_tokenizer(max_length: int = 32):
    """A byte-level BPE tokenizer with the RoBERTa specials and the 256 byte symbols, no merges."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    vocabulary = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
    for symbol in sorted(ByteLevel.alphabet()):
        vocabulary.setdefault(symbol, len(vocabulary))
    return RobertaTokenizer(vocab=vocabulary, merges=[], model_max_length=max_length)


def _t5_config(tokenizer, width: int):
    from transformers import T5Config

    return T5Config(vocab_size=len(tokenizer), d_model=width, d_kv=8, d_ff=2 * width, num_layers=1, num_heads=2,
                    relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                    is_encoder_decoder=False, use_cache=False)


def _t5_encoder(tokenizer, width: int, seed: int):
    from transformers import T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(_t5_config(tokenizer, width)).eval()


def _clap(tokenizer, projection: int, seed: int):
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(seed)
    text = dict(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=40, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0, pad_token_id=1)
    audio = dict(hidden_size=16, patch_embeds_hidden_size=8, depths=[1, 1], num_attention_heads=[2, 2],
                 window_size=4, spec_size=64, num_mel_bins=16, enable_fusion=False)
    return ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=projection)).eval()


def _mel_vae_and_vocoder(seed: int, rate: int = 16_000):
    """Mono mel VAE (8 latent channels, time and frequency halved once) and a HiFi-GAN with hop 160 at 16 kHz."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=4, sample_size=32)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=16, sampling_rate=rate, upsample_initial_channel=16, upsample_rates=[5, 4, 8],
        upsample_kernel_sizes=[10, 8, 16], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        normalize_before=False))
    with torch.no_grad():  # default init makes a near-silent vocoder; wider weights give audible noise
        for parameter in vocoder.parameters():
            parameter.normal_(0.0, 0.2)
    return vae.eval(), vocoder.eval()


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False)


# ---- MusicGen ----------------------------------------------------------------------------------------------
def build_musicgen(root: str | os.PathLike, repo_name: str = "musicgen-small", stereo: bool = False,
                   rate: int = 32_000, seed: int = 0) -> Path:
    """T5 encoder + one-layer LM + EnCodec with 50 frames/s and 4 codebooks per channel (the real framing)."""
    from transformers import (EncodecConfig, EncodecFeatureExtractor, MusicgenConfig, MusicgenDecoderConfig,
                              MusicgenForConditionalGeneration, MusicgenProcessor)

    tokenizer = t5_tokenizer()
    channels = 2 if stereo else 1
    ratios = _factor(rate // 50)
    codebook_size = 32
    encodec = EncodecConfig(sampling_rate=rate, audio_channels=1, num_filters=4, num_residual_layers=1,
                            upsampling_ratios=ratios, codebook_size=codebook_size, hidden_size=16,
                            num_lstm_layers=1, target_bandwidths=[1.0], codebook_dim=16)
    decoder = MusicgenDecoderConfig(vocab_size=codebook_size, hidden_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, ffn_dim=64, num_codebooks=4 * channels,
                                    audio_channels=channels, max_position_embeddings=256,
                                    pad_token_id=codebook_size, bos_token_id=codebook_size)
    text = _t5_config(tokenizer, 32)
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text.to_dict(),
                                                            audio_encoder=encodec.to_dict(),
                                                            decoder=decoder.to_dict())).eval()
    with torch.no_grad():  # EnCodec codebooks start at zero, which would make every code decode alike
        for name, buffer in model.audio_encoder.named_buffers():
            if name.endswith("codebook.embed"):
                buffer.normal_()
    generation = model.generation_config
    generation.pad_token_id = generation.decoder_start_token_id = generation.bos_token_id = codebook_size
    generation.do_sample, generation.top_k, generation.guidance_scale = True, 250, 3.0
    repo = Path(root) / repo_name
    model.save_pretrained(repo)
    processor = MusicgenProcessor(feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=rate),
                                  tokenizer=tokenizer)
    processor.save_pretrained(repo)
    return repo


def _factor(hop: int) -> list[int]:
    """Upsampling ratios whose product is `hop`, largest first (EnCodec's decoder order)."""
    ratios = []
    for factor in (8, 5, 4, 3, 2):
        while hop % factor == 0 and hop > 1:
            ratios.append(factor)
            hop //= factor
    if hop != 1:
        raise ValueError(f"hop has a prime factor above 8: {hop}")
    return ratios


# ---- AudioLDM 2 --------------------------------------------------------------------------------------------
def build_audioldm2(root: str | os.PathLike, repo_name: str = "audioldm2", seed: int = 1) -> Path:
    """CLAP + T5 text, projection, GPT-2 producing 8 conditioning states, a two-level UNet cross-attending to
    the GPT-2 states and the T5 states, the mel VAE and the 16 kHz vocoder."""
    from diffusers import AudioLDM2Pipeline, AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel
    from transformers import ClapFeatureExtractor, GPT2Config, GPT2LMHeadModel

    roberta, t5 = roberta_tokenizer(), t5_tokenizer()
    clap, text_encoder_2 = _clap(roberta, projection=16, seed=seed), _t5_encoder(t5, 24, seed)
    torch.manual_seed(seed)
    language_model = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=8, n_positions=64,
                                                max_new_tokens=8)).eval()
    projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=24, langauge_model_dim=16)
    unet = AudioLDM2UNet2DConditionModel(
        sample_size=32, in_channels=8, out_channels=8, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=[[None, 16, 24]] * 2, attention_head_dim=4, norm_num_groups=4)
    vae, vocoder = _mel_vae_and_vocoder(seed)
    pipeline = AudioLDM2Pipeline(vae=vae, text_encoder=clap, text_encoder_2=text_encoder_2,
                                 projection_model=projection, language_model=language_model, tokenizer=roberta,
                                 tokenizer_2=t5, feature_extractor=ClapFeatureExtractor(feature_size=16),
                                 unet=unet, scheduler=_ddim(), vocoder=vocoder)
    repo = Path(root) / repo_name
    pipeline.save_pretrained(repo)
    return repo


# ---- MusicLDM ----------------------------------------------------------------------------------------------
def build_musicldm(root: str | os.PathLike, repo_name: str = "musicldm", seed: int = 2) -> Path:
    """CLAP text embedding as the UNet's class embedding (the MusicLDM wiring), mel VAE, 16 kHz vocoder."""
    from diffusers import MusicLDMPipeline, UNet2DConditionModel
    from transformers import ClapFeatureExtractor

    roberta = roberta_tokenizer()
    clap = _clap(roberta, projection=16, seed=seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=8, out_channels=8, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4, class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=16, class_embeddings_concat=True)
    vae, vocoder = _mel_vae_and_vocoder(seed)
    pipeline = MusicLDMPipeline(vae=vae, text_encoder=clap, tokenizer=roberta,
                                feature_extractor=ClapFeatureExtractor(feature_size=16), unet=unet,
                                scheduler=_ddim(), vocoder=vocoder)
    repo = Path(root) / repo_name
    pipeline.save_pretrained(repo)
    return repo


# ---- Stable Audio Open -------------------------------------------------------------------------------------
def build_stable_audio(root: str | os.PathLike, repo_name: str = "stable-audio-open-1.0", seed: int = 3) -> Path:
    """T5 text + seconds conditioning, a one-layer DiT, and a stereo 44.1 kHz Oobleck autoencoder (hop 16)
    whose latent window covers about 0.37 s."""
    from diffusers import (AutoencoderOobleck, CosineDPMSolverMultistepScheduler, StableAudioDiTModel,
                           StableAudioPipeline)
    from diffusers.pipelines.stable_audio import StableAudioProjectionModel

    t5 = t5_tokenizer()
    text_encoder = _t5_encoder(t5, 24, seed)
    torch.manual_seed(seed)
    vae = AutoencoderOobleck(encoder_hidden_size=6, downsampling_ratios=[2, 8], decoder_channels=6,
                             decoder_input_channels=4, audio_channels=2, channel_multiples=[2, 4],
                             sampling_rate=44_100)
    transformer = StableAudioDiTModel(sample_size=1024, in_channels=4, num_layers=1, attention_head_dim=8,
                                      num_attention_heads=2, num_key_value_attention_heads=2, out_channels=4,
                                      cross_attention_dim=16, time_proj_dim=8, global_states_input_dim=48,
                                      cross_attention_input_dim=24)
    projection = StableAudioProjectionModel(text_encoder_dim=24, conditioning_dim=24, min_value=0, max_value=64)
    scheduler = CosineDPMSolverMultistepScheduler(solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
                                                  sigma_schedule="exponential")
    pipeline = StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection, tokenizer=t5,
                                   transformer=transformer, scheduler=scheduler)
    repo = Path(root) / repo_name
    pipeline.save_pretrained(repo)
    return repo


BUILDERS = {"musicgen": build_musicgen, "audioldm2": build_audioldm2, "musicldm": build_musicldm,
            "stable_audio": build_stable_audio}
