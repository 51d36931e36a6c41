"""A complete outside model: one tone per caption (its pitch from the caption's text) with a little noise.

    fluxbench run --model examples/tone_model.py:ToneModel --set demo
"""

import zlib

import numpy as np

from fluxbench.models.base import GeneratedAudio, TextToMusicModel


class ToneModel(TextToMusicModel):
    name = "tone"
    sample_rate = 16_000

    def generate(self, prompts, duration=10.24, seed=0, settings=None, progress=False, **options):
        settings = self.settings_for(duration, settings, options)
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * len(prompts)
        time = np.arange(round(settings.duration * self.sample_rate)) / self.sample_rate
        clips = []
        for prompt, clip_seed in zip(prompts, seeds):
            pitch = 220.0 * 2 ** ((zlib.crc32(prompt.encode()) % 24) / 12)  # within two octaves above A3
            noise = np.random.default_rng(clip_seed).normal(0.0, 0.01, time.size)
            clips.append(0.3 * np.sin(2 * np.pi * pitch * time) + noise)
        return GeneratedAudio(np.stack(clips).astype(np.float32), self.sample_rate)

    def fingerprint(self):
        return "tone-v1"
