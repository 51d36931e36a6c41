"""MusicLDM (diffusers `MusicLDMPipeline`): a music CLAP text embedding conditioning a latent diffusion UNet
over the 16 kHz mel VAE, decoded by a HiFi-GAN vocoder.

The adapter computes the text embeddings itself (the projected, L2-normalised CLAP text features the pipeline
expects, tokens padded to the tokenizer's maximum length as the pipeline does) and passes them in, since the
pipeline's own encoding expects the older transformers API where `get_text_features` returned a tensor.
"""

from __future__ import annotations

from typing import Any

from fluxbench.models.baselines.common import DiffusersModel


class MusicLDMModel(DiffusersModel):
    family = "musicldm"
    pipeline_class = "MusicLDMPipeline"

    def _clap_text(self, texts: list[str]):
        tokenizer, encoder = self.pipeline.tokenizer, self.pipeline.text_encoder
        tokens = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                           return_tensors="pt").to(self.device)
        features = encoder.get_text_features(tokens.input_ids, attention_mask=tokens.attention_mask)
        features = getattr(features, "pooler_output", features)  # a tensor in older transformers
        return features.to(encoder.text_model.dtype)

    def _text_arguments(self, prompts: list[str], negative_prompt: str) -> dict[str, Any]:
        return {"prompt_embeds": self._clap_text(prompts),
                "negative_prompt_embeds": self._clap_text([negative_prompt] * len(prompts))}
