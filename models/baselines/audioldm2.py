"""AudioLDM 2 (diffusers `AudioLDM2Pipeline`): CLAP + Flan-T5 text, a GPT-2 that turns them into an "audio
language of thought", a latent diffusion UNet over the 16 kHz mel VAE, and a HiFi-GAN vocoder.

The adapter encodes each prompt (and the negative prompt) on its own and hands the pipeline the embeddings.
Encoded as a batch, the shorter prompts' T5 padding sits inside the GPT-2 input and shifts the positions of
what follows it, so a clip would depend on the longest prompt of its batch; encoded alone it does not. The T5
states are then padded to a common length under a zero attention mask, which the UNet's cross-attention
ignores.
"""

from __future__ import annotations

from typing import Any

from fluxbench.models.baselines.common import DiffusersModel


class AudioLDM2Model(DiffusersModel):
    family = "audioldm2"
    pipeline_class = "AudioLDM2Pipeline"

    def _encode(self, text: str):
        """(T5 states [1, L, D], their mask [1, L], GPT-2 states [1, 8, D']) of one text."""
        return self.pipeline.encode_prompt([text], self.device, num_waveforms_per_prompt=1,
                                           do_classifier_free_guidance=False)

    def _text_arguments(self, prompts: list[str], negative_prompt: str) -> dict[str, Any]:
        import torch

        conditional = [self._encode(prompt) for prompt in prompts]
        unconditional = [self._encode(negative_prompt)] * len(prompts)
        length = max(states.shape[1] for states, _, _ in conditional + unconditional[:1])

        def stacked(encoded):
            states = torch.cat([torch.nn.functional.pad(s, (0, 0, 0, length - s.shape[1])) for s, _, _ in encoded])
            mask = torch.cat([torch.nn.functional.pad(m, (0, length - m.shape[1])) for _, m, _ in encoded])
            return states, mask, torch.cat([generated for _, _, generated in encoded])

        states, mask, generated = stacked(conditional)
        negative_states, negative_mask, negative_generated = stacked(unconditional)
        return {"prompt_embeds": states, "attention_mask": mask, "generated_prompt_embeds": generated,
                "negative_prompt_embeds": negative_states, "negative_attention_mask": negative_mask,
                "negative_generated_prompt_embeds": negative_generated}
