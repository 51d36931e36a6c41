"""`fluxbench generate`: captions -> WAV files (+ optional mel-spectrogram PNGs) and a JSON sidecar.

Clips are made by the path `fluxbench run` uses (`fluxbench.generation`): the same model loading, per-clip
seeds derived from --seed and the prompt's id, and the content-addressed clip store, so a prompt with the same
id, seed and settings gives the same audio through either command. Each batch is stored as it finishes, so an
interrupted run resumes where it stopped when the same command is run again. The WAVs in --out are placed
from the store; the sidecar (`generation.json`) records every setting, the model fingerprint, the weights'
checksums and each clip's prompt, seed, file and store key.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from fluxbench import FluxbenchError
from fluxbench.atomic import atomic_path, write_json
from fluxbench.captions import read_caption_list
from fluxbench.inputs import (existing_dir, existing_file, finite_float, output_dir, positive_int, read_json,
                              seconds, seed_int, text_file, unique_file_stems)

SIDECAR = "generation.json"
SCHEMA = 2  # 2: per-clip seeds derived from --seed and the prompt id, clips kept in a clip store
# FluxMusic loading options and the flags that set them; only flags given reach the model.
FLUXMUSIC_FLAGS = {"t5": "--t5", "clap": "--clap", "audioldm2": "--audioldm2", "vae": "--vae",
                   "vocoder": "--vocoder", "use_t5": "--no-t5", "use_clap": "--no-clap",
                   "keep_text_encoders": "--keep-text-encoders", "batched_guidance": "--sequential-guidance"}
HUB_COMPONENTS = ("t5", "clap", "audioldm2", "vae", "vocoder")  # a model folder names its own
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to generate")
    what.add_argument("--model", default="fluxmusic-small",
                      help="registered model name (see `fluxbench models`) or a trained FluxMusic model folder")
    what.add_argument("--prompt", action="append", default=[], help="a caption (repeatable)")
    what.add_argument("--prompts-file", type=text_file,
                      help="captions: .txt (one per line) or .json/.jsonl/.csv/.tsv with a "
                           "'caption' (or 'prompt') and optional 'id' per item")
    what.add_argument("--out", required=True, type=output_dir, help="output folder for WAVs and generation.json")
    what.add_argument("--duration", type=seconds, default=10.24, help="seconds per clip (default: 10.24, the paper's)")
    what.add_argument("--mel-png", action="store_true", help="also write a mel-spectrogram PNG per clip")
    how = parser.add_argument_group("sampling")
    how.add_argument("--preset", choices=["paper", "official"],
                     help="FluxMusic: paper (default: 50 steps, guidance 3.5, empty negative) or official: the "
                          "released sample.py (guidance 7.0, negative 'low quality, gentle')")
    how.add_argument("--seed", type=seed_int, default=0,
                     help="run seed; each clip's seed is derived from it and the prompt's id, as in "
                          "`fluxbench run` (default: 0)")
    how.add_argument("--steps", type=positive_int, help="sampling steps (overrides the preset)")
    how.add_argument("--guidance", type=finite_float, help="classifier-free guidance scale (overrides the preset)")
    how.add_argument("--negative-prompt", help="negative text for guidance (overrides the preset)")
    how.add_argument("--solver", help="ODE solver: euler (official), heun or midpoint")
    how.add_argument("--no-clamp-x0", dest="clamp_x0", action="store_const", const=False,
                     help="sample without clamping the clean-sample estimates to the training latents' range "
                          "(recorded by `fluxbench train`)")
    how.add_argument("--batch-size", type=positive_int, default=4, help="clips per denoising batch (default: 4)")
    how.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    how.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                     help="denoising precision; auto = float16 weights on GPU, float32 on CPU")
    how.add_argument("--sequential-guidance", action="store_true",
                     help="FluxMusic: conditional and unconditional passes as two calls of a batch (half the "
                          "activation memory) instead of one call of a double batch")
    where = parser.add_argument_group("weights (each resolves: flag, env var, --weights-dir, HF cache, hub)")
    where.add_argument("--weights-dir", type=existing_dir,
                       help="folder of local copies laid out like the hub repos (default: $FLUXBENCH_WEIGHTS_DIR)")
    where.add_argument("--checkpoint", type=existing_file,
                       help="FluxMusic transformer checkpoint (.pt or .safetensors)")
    where.add_argument("--t5", help="T5 hub id or local folder (default: the SD3 text_encoder_3 copy)")
    where.add_argument("--clap", help="CLAP hub id or local folder (default: laion/larger_clap_music)")
    where.add_argument("--audioldm2", help="AudioLDM 2 hub repo for VAE + vocoder (default: cvssp/audioldm2)")
    where.add_argument("--vae", help="local AudioLDM 2 vae/ folder")
    where.add_argument("--vocoder", help="local AudioLDM 2 vocoder/ folder")
    where.add_argument("--no-t5", action="store_true", help="leave T5 out (its slot gets the cached null embedding)")
    where.add_argument("--no-clap", action="store_true",
                       help="leave CLAP out (its slot gets the cached null embedding)")
    where.add_argument("--keep-text-encoders", action="store_true",
                       help="keep T5/CLAP in memory while denoising (default: free them after encoding)")
    where.add_argument("--offline", action="store_true", help="never download (same as HF_HUB_OFFLINE=1)")
    parser.add_argument("--store", type=output_dir,
                        help="clip store (default: OUT/store); `fluxbench run`'s (e.g. runs/store) shares clips "
                             "with it")
    parser.add_argument("--overwrite", action="store_true", help="replace clips in --out made with other settings")


# ---- prompts ---------------------------------------------------------------------------------------------
def read_prompts(args: argparse.Namespace) -> list[dict[str, str]]:
    """[{"id", "prompt"[, "source_id"]}] from --prompt and --prompts-file, in order: "id" names the file (the
    given id when it is a safe file name, else a safe stem, with the given id kept as "source_id")."""
    items: list[tuple[str | None, str]] = [(None, p) for p in args.prompt]
    if any(not p.strip() for p in args.prompt):
        raise FluxbenchError("--prompt: empty caption; give the text to generate from")
    if args.prompts_file:
        items += _read_prompts_file(Path(args.prompts_file))
    if not items:
        raise FluxbenchError("no prompts: give --prompt TEXT (repeatable) or --prompts-file FILE")
    ids = [item_id if item_id is not None else f"{index:04d}" for index, (item_id, _) in enumerate(items)]
    repeated = next((item_id for index, item_id in enumerate(ids) if item_id in ids[:index]), None)
    if repeated is not None:
        raise FluxbenchError(f"prompt id {repeated!r} appears twice; ids name the output files")
    stems = unique_file_stems(ids, "prompts")
    return [{"id": stems[item_id], "prompt": prompt, **({"source_id": item_id} if stems[item_id] != item_id else {})}
            for item_id, (_, prompt) in zip(ids, items)]


def _read_prompts_file(path: Path) -> list[tuple[str | None, str]]:
    """(id or None, caption) per prompt: a caption per line (.txt or no suffix), or records with a 'caption' (or
    'prompt') and an optional 'id' in any format `fluxbench.captions` reads; captions are used as written."""
    suffix = path.suffix.lower()
    if suffix not in ("", ".txt", ".csv", ".tsv", ".json", ".jsonl", ".ndjson"):
        raise FluxbenchError(f"{path}: unknown prompts file type {path.suffix!r}; expected .txt, .json, .jsonl, "
                             f".csv, .tsv")
    prompts = read_caption_list(path, "prompts file", id_fields=("id",), caption_fields=("caption", "prompt"),
                                ids_required=False, strip=False, kind="text" if suffix in ("", ".txt") else None)
    return [(prompt.id, prompt.text) for prompt in prompts]


# ---- model ----------------------------------------------------------------------------------------------
def model_options(args: argparse.Namespace, entry) -> dict[str, Any]:
    """The loading options the flags give: the shared ones always, FluxMusic's only when given."""
    options = {"device": args.device, "dtype": args.dtype, "weights_dir": args.weights_dir,
               "checkpoint": args.checkpoint}
    given = {"t5": args.t5, "clap": args.clap, "audioldm2": args.audioldm2, "vae": args.vae, "vocoder": args.vocoder,
             "use_t5": False if args.no_t5 else None, "use_clap": False if args.no_clap else None,
             "keep_text_encoders": True if args.keep_text_encoders else None,
             "batched_guidance": False if args.sequential_guidance else None}
    given = {name: value for name, value in given.items() if value is not None}
    if given and entry.facts.get("family") != "fluxmusic":
        flags = ", ".join(FLUXMUSIC_FLAGS[name] for name in given)
        raise FluxbenchError(f"{flags}: FluxMusic options, but {entry.name} is a {entry.facts.get('family')} model")
    if "folder" in entry.bound:
        ignored = [FLUXMUSIC_FLAGS[name] for name in HUB_COMPONENTS if name in given]
        if ignored:
            raise FluxbenchError(f"{', '.join(ignored)}: a model folder names its own components; "
                                 f"leave these out with --model {args.model}")
    return {**{k: v for k, v in options.items() if v is not None}, **given}


# ---- output ----------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("fluxbench", "torch", "transformers", "diffusers", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def write_mel_png(path: Path, wave, sample_rate: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FluxbenchError("--mel-png needs matplotlib: pip install 'fluxbench[reports]'") from None
    import torch

    from fluxbench.audio import MEL_HOP, MEL_SAMPLE_RATE, mel_spectrogram, resample

    wave = resample(wave, sample_rate, MEL_SAMPLE_RATE) if sample_rate != MEL_SAMPLE_RATE else wave
    mel = mel_spectrogram(torch.from_numpy(wave[None].copy()))[0].numpy().T
    figure, axes = plt.subplots(figsize=(8, 2.6), dpi=100)
    seconds = mel.shape[1] * MEL_HOP / MEL_SAMPLE_RATE
    image = axes.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, mel.shape[0]))
    axes.set_xlabel("time (s)")
    axes.set_ylabel("mel bin")
    axes.set_title(path.stem.removesuffix(".mel"), fontsize=9)
    figure.colorbar(image, ax=axes, label="log magnitude")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp)
    plt.close(figure)


def _read_sidecar(path: Path, overwrite: bool) -> dict[str, Any]:
    """The previous run's sidecar; an unreadable one is ignored with --overwrite, else a one-line error."""
    try:
        previous = read_json(path, SIDECAR)
        if not isinstance(previous, dict) or not isinstance(previous.get("clips", []), list):
            raise FluxbenchError(f"{path}: expected the JSON object fluxbench generate writes")
        return previous
    except FluxbenchError as error:
        if overwrite:
            log.warning("%s; --overwrite: generating every clip again", error)
            return {}
        raise FluxbenchError(f"{error}; pass --overwrite to generate every clip again") from None


def main(args: argparse.Namespace) -> int:
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = os.environ["FLUXBENCH_OFFLINE"] = "1"
    items = read_prompts(args)
    out = Path(args.out)

    from fluxbench import generation, registry
    from fluxbench.store import ClipStore, file_record

    entry = registry.model_entry(args.model)
    options = model_options(args, entry)
    out.mkdir(parents=True, exist_ok=True)
    _, model = generation.load_model(args.model, options, args.batch_size, progress=not args.quiet)
    overrides = {"preset": args.preset, "steps": args.steps, "guidance": args.guidance,
                 "negative_prompt": args.negative_prompt, "solver": args.solver, "clamp_x0": args.clamp_x0}
    settings = model.resolve_settings(args.duration, **{k: v for k, v in overrides.items() if v is not None})
    header = {"schema": SCHEMA, "model": model.name, "fingerprint": model.fingerprint(),
              "checksums": model.checksums(), "settings": {**settings.record(), "duration": settings.duration},
              "seed": args.seed, "batch_size": args.batch_size, "versions": _versions()}
    sidecar_path = out / SIDECAR
    if sidecar_path.is_file():
        previous = _read_sidecar(sidecar_path, args.overwrite)
        same = all(previous.get(k) == header[k] for k in ("schema", "fingerprint", "settings", "seed", "batch_size"))
        if previous and not same and not args.overwrite:
            raise FluxbenchError(f"{out} holds clips made with another model or settings ({SIDECAR}); "
                                 f"use a new --out or pass --overwrite")
    write_json(sidecar_path, {**header, "clips": []})  # other settings are refused from the first clip on
    store = ClipStore(args.store or out / "store")
    # A prompt's own id (the given one, not the file-name stem made from it) seeds its clip, as a set item's does.
    prompts = [generation.Prompt(item.get("source_id", item["id"]), item["prompt"]) for item in items]
    identities = generation.clip_identities(model, prompts, args.seed, settings, args.batch_size)
    keys = generation.generate_clips(model, store, prompts, args.seed, settings, args.batch_size,
                                     progress=not args.quiet)
    clips = []
    for item, prompt in zip(items, prompts):
        wav = out / f"{item['id']}.wav"
        placed = not (wav.is_file() and not wav.is_symlink() and os.path.samefile(store.path(keys[prompt.id]), wav))
        store.export(keys[prompt.id], wav)
        info = _wav_info(wav)
        record = {"id": item["id"], **({"source_id": item["source_id"]} if "source_id" in item else {}),
                  "prompt": item["prompt"], "seed": identities[prompt.id]["seed"], "file": wav.name,
                  "key": keys[prompt.id], "sample_rate": info.samplerate, "samples": int(info.frames),
                  **file_record(wav)}
        if args.mel_png:
            png = out / f"{item['id']}.mel.png"
            if placed or not png.is_file():
                from fluxbench.audio import read_audio, to_mono

                audio, rate = read_audio(wav)
                write_mel_png(png, to_mono(audio), rate)
            record["mel_png"] = png.name
        clips.append(record)
    write_json(sidecar_path, {**header, "clips": clips})
    print(f"{len(items)} clips in {out} ({SIDECAR}: settings, seeds, weights checksums)")
    return 0


def _wav_info(path: Path):
    import soundfile

    return soundfile.info(str(path))
