"""Where FluxMusic's components come from: the released checkpoints, the T5 and CLAP text encoders, the AudioLDM 2
VAE and vocoder (hub ids, files, environment variables, local names). Resolved by `fluxbench.weights`.

Facts: the paper, the official code and its README (the hub repos it names and the ones it loads).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fluxbench.models.fluxmusic.configs import CHECKPOINT_FILES, HUB_REPO
from fluxbench.weights import WeightSource


def fluxmusic_checkpoint(size: str) -> WeightSource:
    """The official release file of one size (hub repo feizhengcong/FluxMusic)."""
    filename = CHECKPOINT_FILES[size]
    return WeightSource(f"FluxMusic-{size} checkpoint", f"FLUXBENCH_FLUXMUSIC_{size.upper()}",
                        f"FluxMusic/{filename}", hub_repo=HUB_REPO, filename=filename)


# The T5-XXL encoder. The official code names google/t5-v1_1-xxl but loads the SD3 copy (text_encoder_3 +
# tokenizer_3, fp16 safetensors, encoder only) and its README links that copy, so it is the default; the
# google repo is the same v1.1 XXL encoder (ungated, but a 44 GB full encoder-decoder checkpoint).
T5_SD3 = WeightSource(
    "T5-XXL text encoder", "FLUXBENCH_T5", "stable-diffusion-3-medium-diffusers",
    hub_repo="stabilityai/stable-diffusion-3-medium-diffusers",
    allow_patterns=("text_encoder_3/*", "tokenizer_3/*"), required=("text_encoder_3/config.json", "tokenizer_3"))
T5_GOOGLE = WeightSource(
    "T5-XXL text encoder", "FLUXBENCH_T5", "t5-v1_1-xxl", hub_repo="google/t5-v1_1-xxl",
    allow_patterns=("config.json", "*.model", "tokenizer*", "special_tokens_map.json", "*.safetensors*",
                    "pytorch_model*.bin*"),
    required=("config.json",))
T5_SOURCES = {source.hub_repo: source for source in (T5_SD3, T5_GOOGLE)}
DEFAULT_T5 = T5_SD3.hub_repo

CLAP_MUSIC = WeightSource("CLAP text encoder", "FLUXBENCH_CLAP", "larger_clap_music",
                          hub_repo="laion/larger_clap_music", required=("config.json",))
DEFAULT_CLAP = CLAP_MUSIC.hub_repo

# AudioLDM 2 VAE + HiFi-GAN vocoder. The official training and sampling scripts load both from a clone of
# cvssp/audioldm2 (its README says to clone it), so the released transformers learned that VAE's latents;
# cvssp/audioldm2-music has the same architecture and is one option away.
AUDIOLDM2_REPOS = ("cvssp/audioldm2", "cvssp/audioldm2-music")
DEFAULT_AUDIOLDM2 = AUDIOLDM2_REPOS[0]


def audioldm2_part(part: str, repo: str = DEFAULT_AUDIOLDM2) -> WeightSource:
    """"vae" or "vocoder" of an AudioLDM 2 hub repo, a save_pretrained folder each."""
    label = {"vae": "AudioLDM 2 VAE", "vocoder": "AudioLDM 2 HiFi-GAN vocoder"}[part]
    return WeightSource(label, f"FLUXBENCH_AUDIOLDM2_{part.upper()}", f"{repo.split('/')[-1]}/{part}",
                        hub_repo=repo, subfolder=part, required=("config.json",))


def hub_source(kind: str, repo_or_path: str) -> tuple[WeightSource, str | None]:
    """(source, explicit local path) for a component named by hub id or by a local path."""
    known = {"t5": T5_SOURCES, "clap": {CLAP_MUSIC.hub_repo: CLAP_MUSIC}}[kind]
    if repo_or_path in known:
        return known[repo_or_path], None
    if Path(repo_or_path).expanduser().exists() or repo_or_path.startswith((".", "/", "~")):
        default = known[DEFAULT_T5 if kind == "t5" else DEFAULT_CLAP]
        # A local copy may use either hub layout; its loader checks what it finds.
        return dataclasses.replace(default, required=()), str(Path(repo_or_path).expanduser())
    name = {"t5": "T5 text encoder", "clap": "CLAP text encoder"}[kind]
    env = {"t5": "FLUXBENCH_T5", "clap": "FLUXBENCH_CLAP"}[kind]
    return WeightSource(name, env, repo_or_path.split("/")[-1], hub_repo=repo_or_path, required=("config.json",)), None
