"""The benchmark pipeline behind `fluxbench run`: generate -> embed -> score -> record.

Resumable: clips go to a content-addressed store as each batch finishes (atomic writes), so a killed run
redoes at most the batch in flight. Batches are fixed chunks of the item list and every clip has its own seed
(derived from the run seed and the item id), so a resumed or sharded run generates exactly what a plain run
does. Sharding: under `torchrun --nproc-per-node K` (or with `--shard i/K`) each process takes every K-th batch;
under torchrun rank 0 waits for the others and scores; with `--shard` each process only generates and a final
plain run (which then finds every clip) scores.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fluxbench import FluxbenchError, generation, registry
from fluxbench.atomic import write_json
from fluxbench.catalog import OFFLINE_DEFAULT
from fluxbench.inputs import safe_file_stem, unique_file_stems
from fluxbench.models.base import DEFAULT_DURATION, GenerationSettings, TextToMusicModel
from fluxbench.protocols.metrics.table import RESULT_KEYS
from fluxbench.protocols.sets.base import EvalSet, SetItem
from fluxbench.results import write_results
from fluxbench.runtime import distributed, environment
from fluxbench.store import ClipStore

log = logging.getLogger(__name__)

GENERATION_TIME_FILE = "generation-seconds.{shard}.json"  # one per process, so shards never write the same file


@dataclass
class RunConfig:
    model: str = OFFLINE_DEFAULT["model"]
    set: str = OFFLINE_DEFAULT["set"]
    metrics: list[str] | None = None  # None: what the backbone offers
    backbone: str = "auto"  # auto: the paper's backbones for real sets, the weight-free descriptor for demo
    limit: int | None = None
    seed: int = 0
    duration: float | None = None  # None: the set's clip length, else 10.24 s
    batch_size: int = 4
    generation: dict[str, Any] = field(default_factory=dict)  # steps, guidance, preset, solver, ...
    model_options: dict[str, Any] = field(default_factory=dict)  # device, dtype, weights_dir, checkpoint, ...
    set_options: dict[str, Any] = field(default_factory=dict)  # captions, audio_dir, subset, ...
    reference_crop: str | None = None  # none | start | center; None: the set's convention
    bootstrap: int = 1000
    out: str = "runs"
    name: str | None = None
    store: str | None = None  # clip store; default <out>/store
    shard: tuple[int, int] | None = None  # (index, count)
    progress: bool = True
    anchors: bool = True  # on labelled sets: score noise, untrained and codec rows beside the model
    generated: str | None = None  # a folder of audio made elsewhere, named by item id, scored instead of a model
    label: str | None = None  # the name that folder's row gets; default: the folder's name

    def model_name(self) -> str:
        """The model's own name: a registry name as given, a model folder's name (not its path), an outside
        factory's attribute name, or a pre-generated folder's label."""
        if self.generated:
            from fluxbench.pregenerated import default_label

            return self.label or default_label(self.generated)
        if registry.model_folder_reader(self.model):
            return Path(self.model).resolve().name
        return self.model.rpartition(":")[2] if registry.is_external_target(self.model) else self.model

    def run_name(self) -> str:
        """A single folder name, so a run always lands directly under --out, where `report` looks."""
        if self.name:
            if self.name != _single_component(self.name):
                raise FluxbenchError(f"--name {self.name!r}: expected a plain folder name (no '/', '..' or leading "
                                     f"'.'); the run goes under --out ({self.out})")
            return self.name
        prefix, colon, source = self.set.partition(":")
        set_name = f"{prefix}-{Path(source).name or source}" if colon else self.set  # hf:org/name -> hf-name
        parts = [self.model_name(), set_name, f"seed{self.seed}"] + ([f"n{self.limit}"] if self.limit else [])
        return _single_component("-".join(parts))


def _single_component(name: str) -> str:
    """`name` made a safe single path component (separators become '-', no leading dots)."""
    return re.sub(r"[/\\]+", "-", name).lstrip(".") or "run"


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise FluxbenchError(f"--shard {text!r}: expected i/K with 0 <= i < K, e.g. 0/4") from None
    if not 0 <= index < count:
        raise FluxbenchError(f"--shard {text!r}: expected i/K with 0 <= i < K")
    return index, count


class Runner:
    def __init__(self, config: RunConfig):
        self.config = config
        self.run_dir = Path(config.out) / config.run_name()
        self.store = ClipStore(config.store or Path(config.out) / "store")
        self.rank, self.world, self.dist = distributed()
        if config.shard and self.world > 1:
            raise FluxbenchError("--shard cannot be combined with torchrun; use one or the other")
        if config.generated and (config.shard or self.world > 1):
            raise FluxbenchError("--generated: a folder of audio is scored in one process; leave out --shard and "
                                 "torchrun")
        self.shard = config.shard or (self.rank, self.world)
        self.folder_match = None  # a pre-generated folder matched against the set (pre-flight)

    # ---- inputs ---------------------------------------------------------------------------------------------
    def set_items(self, eval_set: EvalSet) -> list[SetItem]:
        items = list(itertools.islice(eval_set.items(), self.config.limit))
        if len(items) < 2:
            raise FluxbenchError(f"set {self.config.set!r} yields {len(items)} item(s); metrics need at least 2")
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            raise FluxbenchError(f"set {self.config.set!r} has duplicate item ids")
        # Ids are data (from caption files): files are named by a stem that cannot leave the run folder.
        unique_file_stems(ids, f"set {self.config.set!r}")
        return items

    def model_entry(self) -> tuple[registry.Entry, dict[str, Any]]:
        """The model's registry entry (a model folder gets one of its own) and its loading options."""
        entry = registry.model_entry(self.config.model)
        return entry, generation.loading_options(entry, self.config.model_options, self.config.batch_size,
                                                 self.config.progress)

    def load_model(self) -> tuple[registry.Entry, TextToMusicModel]:
        return generation.load_model(self.config.model, self.config.model_options, self.config.batch_size,
                                     self.config.progress)

    def create_set(self) -> EvalSet:
        """The set the config names, built with the set options it takes (others are one-line errors)."""
        entry = registry.set_entry(self.config.set)
        options = set_options(entry, self.config.set_options)
        made = entry.create(**options)
        if not isinstance(made, EvalSet):
            raise FluxbenchError(f"--set {self.config.set}: the factory returned {type(made).__name__}, expected a "
                                 f"fluxbench.protocols.sets.EvalSet")
        return made

    def backbone(self, eval_set: EvalSet) -> str:
        return eval_set.default_backbone if self.config.backbone == "auto" else self.config.backbone

    def reference_crop(self, eval_set: EvalSet) -> str:
        crop = self.config.reference_crop or eval_set.reference_crop
        if crop not in ("none", "start", "center"):
            raise FluxbenchError(f"--reference-crop {crop!r}: expected none, start or center")
        return crop

    # ---- pre-flight -----------------------------------------------------------------------------------------
    def preflight(self) -> tuple[EvalSet, list[SetItem]]:
        """Every part the run needs, located in seconds (nothing generated or downloaded): the set's captions and
        reference audio, the model's weights, the scoring backbones' weights and disk for the clips. One error
        lists every missing part."""
        from fluxbench import preflight
        from fluxbench.preflight import Part

        scoring = self.rank == 0 and not self.config.shard  # shards only generate
        parts: list[Part] = []
        eval_set = self.create_set()  # unknown names and bad options (a subset, ...) fail at once
        items: list[SetItem] = []
        try:
            items = self.set_items(eval_set)
        except FluxbenchError as error:
            parts.append(Part("missing", "captions", str(error)))
        else:
            parts.append(Part("ok", "captions", self.captions_note(eval_set, items)))
            if scoring:
                parts.append(preflight.reference_part(items, eval_set.audio_dir))
        weights_dir = self.config.model_options.get("weights_dir")
        if self.config.generated:
            what = f"generated audio ({self.config.model_name()})"
            if items:
                from fluxbench.pregenerated import describe, match_folder

                self.folder_match = match_folder(self.config.generated, items, eval_set)
                enough, detail = describe(self.folder_match, len(items))
                parts.append(Part("ok" if enough else "missing", what, detail))
            title = f"{self.config.model_name()} (audio folder) on {self.config.set}"
        else:
            entry, options = self.model_entry()
            try:
                requests = preflight.model_weight_requests(entry, options)
            except (FluxbenchError, OSError, ValueError) as error:
                parts.append(Part("missing", f"model {entry.name}", str(error)))
            else:
                parts += preflight.weight_parts(requests, weights_dir, "model")
                if not requests:
                    trained = entry.facts.get("trained_on_first_use")
                    parts.append(Part("ok", f"model {entry.name}", "no downloadable weights"
                                      + (f" (trained on first use when absent: {trained})" if trained else "")))
            title = f"{entry.name} on {self.config.set}"
        if scoring:
            from fluxbench.protocols.metrics.backbones import weight_sources
            from fluxbench.protocols.metrics.scoring import backbones_for

            names = backbones_for(self.config.metrics, self.backbone(eval_set))
            parts += preflight.weight_parts([(source, None) for name in names for source in weight_sources(name)],
                                            weights_dir, "scoring")
        if items:
            duration = self.duration(eval_set)
            clips = 0 if self.config.generated else len(items)  # a folder's files are linked, not written
            rate = 16_000 if self.config.generated else int(entry.facts.get("sample_rate") or 16_000)
            parts.append(preflight.disk_part(self.config.out, clips, duration, rate, len(items),
                                             scoring and self.reference_crop(eval_set) != "none"))
        preflight.report(parts, title)
        return eval_set, items

    @staticmethod
    def captions_note(eval_set: EvalSet, items: list[SetItem]) -> str:
        described = eval_set.describe()
        return (f"{len(items)} items" + (f", subset {eval_set.subset}" if eval_set.subset else "")
                + (f" {described}" if described else ""))

    def duration(self, eval_set: EvalSet) -> float:
        if self.config.duration:
            return float(self.config.duration)
        return float(eval_set.duration or DEFAULT_DURATION)

    # ---- generation ---------------------------------------------------------------------------------------
    def generate(self, model: TextToMusicModel, items: list[SetItem], settings: GenerationSettings) -> dict[str, str]:
        """Make sure every item of this process's batches has a stored clip; returns item id -> clip key."""
        return generation.generate_clips(model, self.store, [generation.Prompt(item.id, item.caption) for item in items],
                                         self.config.seed, settings, self.config.batch_size, self.shard,
                                         self.config.progress, on_batch=self.add_generation_seconds)

    def generation_seconds(self) -> float:
        """Seconds spent generating this run's clips, summed over every process and resumed session."""
        total = 0.0
        for part in self.run_dir.glob(GENERATION_TIME_FILE.format(shard="*")):
            try:
                total += float(json.loads(part.read_text())["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("%s: unreadable generation time, left out of timing", part)
        return total

    def add_generation_seconds(self, seconds: float) -> None:
        path = self.run_dir / GENERATION_TIME_FILE.format(shard=self.shard[0])
        before = 0.0
        if path.is_file():
            try:
                before = float(json.loads(path.read_text())["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        write_json(path, {"seconds": round(before + seconds, 3)}, sort_keys=True)

    # ---- references -----------------------------------------------------------------------------------------
    def prepare_references(self, eval_set: EvalSet, items: list[SetItem],
                           duration: float) -> tuple[Path, dict[str, str]]:
        """Place each usable reference at reference/<stem>.<ext> (`safe_file_stem` of the id); returns the folder
        and, for every item whose reference is absent, in an unsupported format or unreadable, why (reading it as
        scoring will)."""
        from fluxbench.audio import AudioError, fit_length, read_audio, unsupported_format, write_wav
        from fluxbench.protocols.metrics.scoring import audit_file

        folder = self.run_dir / "reference"
        folder.mkdir(parents=True, exist_ok=True)
        crop = self.reference_crop(eval_set)
        problems: dict[str, str] = {}
        for item in items:
            if item.reference is None or not Path(item.reference).is_file():
                problems[item.id] = "no reference file"
                continue
            source = Path(item.reference)
            stem = safe_file_stem(item.id)
            if unsupported_format(source):
                problems[item.id] = f"{source.name}: {unsupported_format(source)}"
                continue
            if crop == "none":
                reason, _ = audit_file(source)
                if reason and reason != "silent":
                    problems[item.id] = f"{source.name}: {reason}"
                    continue
                _symlink(source.resolve(), folder / f"{stem}{source.suffix.lower()}")
                continue
            target = folder / f"{stem}.wav"
            if target.exists():
                continue
            try:
                audio, rate = read_audio(source)
            except AudioError as error:
                problems[item.id] = f"{source.name}: {str(error).split(': ', 1)[-1]}"
                continue
            samples = int(round(duration * rate))
            start = 0 if crop == "start" else max(0, (audio.shape[-1] - samples) // 2)
            write_wav(target, fit_length(audio[:, start:], samples), rate)
        return folder, problems

    def export_generated(self, keys: dict[str, str], items: list[SetItem]) -> Path:
        folder = self.run_dir / "generated"
        for item in items:
            self.store.export(keys[item.id], folder / f"{safe_file_stem(item.id)}.wav")
        return folder

    # ---- the whole run --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any] | None:
        started = time.perf_counter()
        eval_set, items = self.preflight()
        checked = time.perf_counter()
        duration = self.duration(eval_set)
        if self.config.generated:
            clips = self.place_pregenerated(items)
        else:
            clips = self.generate_with_model(items, duration)
            if clips is None:  # a rank or shard that only generates
                return None
        loaded = checked + clips.load_seconds
        reference_dir, unscored = self.prepare_references(eval_set, items, duration)
        missing = set(unscored)  # every reason so far is about the reference
        for item_id, why in clips.unscored.items():
            unscored.setdefault(item_id, why)
        usable = [item for item in items if item.id not in unscored]
        if len(usable) < 2:
            examples = "; ".join(f"{k}: {v}" for k, v in list(unscored.items())[:3])
            raise FluxbenchError(f"only {len(usable)} of {len(items)} items have usable reference and generated "
                                 f"audio; metrics need at least 2 (e.g. {examples}); point --audio-dir at the "
                                 f"set's audio")
        score_started = time.perf_counter()
        scores = self.score(clips.folder, reference_dir, usable, eval_set)
        # What scoring itself set aside (a reference or a generated clip it could not use) is not scored either.
        item_of = {safe_file_stem(item.id): item.id for item in items}
        for skipped in scores.get("skipped", []):
            item_id = item_of.get(Path(skipped["file"]).stem, Path(skipped["file"]).stem)
            unscored.setdefault(item_id, f"{skipped['set']} {skipped['file']}: {skipped['reason']}")
            if skipped["set"] == "reference":
                missing.add(item_id)
        missing_list = [item.id for item in items if item.id in missing]
        scored = [item for item in usable if item.id not in unscored]
        results = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": clips.model_record,
            "set": {"name": eval_set.name, "subset": eval_set.subset, "items": len(items),
                    "scored_items": scores["pairing"]["shared"], "missing_references": missing_list,
                    "unscored": unscored, "limit": self.config.limit, "reference_crop": self.reference_crop(eval_set),
                    **self.captions_provenance(eval_set), "source": eval_set.provenance(),
                    "captions": {item.id: item.caption for item in items}},
            "settings": {"seed": self.config.seed, "duration": duration, **clips.settings},
            "metrics": scores["metrics"],
            "per_clip": scores.get("per_clip", {}),
            "scoring": {k: v for k, v in scores.items() if k not in ("metrics", "per_clip")},
            "environment": environment(self.config.model_options.get("device")),
            "timing": {"preflight_s": round(checked - started, 3), "load_model_s": round(loaded - checked, 3),
                       "train_s": clips.train_seconds,
                       "generate_s": round(self.generation_seconds(), 3) if clips.model is not None else None,
                       "score_s": round(time.perf_counter() - score_started, 3),
                       "wall_s": round(time.perf_counter() - started, 3)},
        }
        if self.config.anchors and eval_set.labels() is not None:
            from fluxbench.anchors import AnchorInputs, score_anchors

            anchors_started = time.perf_counter()
            results["anchors"] = score_anchors(AnchorInputs(
                model=clips.model, eval_set=eval_set, items=scored, run_dir=self.run_dir,
                generated_dir=clips.folder, reference_dir=reference_dir, values=results["metrics"],
                metrics=self.config.metrics, backbone=self.backbone(eval_set), seed=self.config.seed,
                cache_dir=Path(self.config.out) / "cache", settings=clips.generation_settings,
                weights_dir=self.config.model_options.get("weights_dir")))
            results["timing"]["anchors_s"] = round(time.perf_counter() - anchors_started, 3)
        write_results(self.run_dir / "results.json", results)
        return results

    def generate_with_model(self, items: list[SetItem], duration: float) -> "RunClips | None":
        """Load the model and make sure every item has a stored clip; the run folder's generated/ on rank 0 of
        a plain run, None on processes that only generate."""
        loading = time.perf_counter()
        entry, model = self.load_model()
        settings = model.resolve_settings(duration, **self.config.generation)
        if self.rank == 0:
            write_json(self.run_dir / "run.json", {"config": asdict(self.config), "settings": settings.record()},
                       sort_keys=True)
        load_seconds = time.perf_counter() - loading
        keys = self.generate(model, items, settings)
        if self.dist is not None:
            self.dist.barrier()
        if self.rank != 0:
            return None
        if self.config.shard:  # shards only generate; one plain run scores once every shard is done
            done = sum(self.store.has(k) for k in keys.values())
            log.info("shard %d/%d done; %d of %d clips exist: run without --shard to score once all are done",
                     *self.shard, done, len(keys))
            return None
        provenance = model.provenance()
        record = {"name": entry.name, "family": entry.facts.get("family"),
                  "parameters": entry.facts.get("parameters") or provenance.get("parameters"),
                  "training": provenance.get("training"), "fingerprint": model.fingerprint(),
                  "weights": model.checksums()}
        if entry.facts.get("external"):
            record["source"] = {k: entry.facts[k] for k in ("target", "package", "version") if k in entry.facts}
        return RunClips(self.export_generated(keys, items), record,
                        {"batch_size": self.config.batch_size, **settings.record()}, model, settings,
                        load_seconds, provenance.get("training", {}).get("seconds"))

    def place_pregenerated(self, items: list[SetItem]) -> "RunClips":
        """The matched files of a pre-generated folder placed in generated/ (links, else copies); files left from
        an earlier placement that match no current item are removed, so only this folder's audio is scored."""
        from fluxbench import pregenerated
        from fluxbench.store import place_file

        match = self.folder_match
        usable = match.usable()
        folder = self.run_dir / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {f"{safe_file_stem(item_id)}{path.suffix.lower()}": path for item_id, path in usable.items()}
        for stale in folder.iterdir():
            if stale.name not in wanted and (stale.is_file() or stale.is_symlink()):
                stale.unlink()
        for name, source in wanted.items():
            place_file(source.resolve(), folder / name)
        record = pregenerated.model_record(self.config.model_name(), match)
        write_json(self.run_dir / "run.json", {"config": asdict(self.config), "settings": {"source": "audio folder"}},
                   sort_keys=True)
        return RunClips(folder, record, {"source": "audio folder"}, None, None, 0.0, None,
                        pregenerated.unscored_reasons(match))

    @staticmethod
    def captions_provenance(eval_set: EvalSet) -> dict[str, Any]:
        path = eval_set.captions_path
        if path is None:
            return {"captions_file": None, "captions_sha256": None}
        from fluxbench.weights import sha256_of

        return {"captions_file": str(path), "captions_sha256": sha256_of(path)}

    def score(self, generated_dir: Path, reference_dir: Path, items: list[SetItem], eval_set: EvalSet) -> dict:
        from fluxbench.protocols.metrics.scoring import score_folders

        stems = {item.id: safe_file_stem(item.id) for item in items}
        captions = {stems[item.id]: item.caption for item in items}
        scores = score_folders(generated_dir, reference_dir, metrics=self.config.metrics,
                               backbone=self.backbone(eval_set), captions=captions, ids=[stems[item.id] for item in items],
                               bootstrap=self.config.bootstrap, seed=self.config.seed,
                               cache_dir=Path(self.config.out) / "cache",
                               weights_dir=self.config.model_options.get("weights_dir"), progress=self.config.progress)
        item_of = {stem: item_id for item_id, stem in stems.items()}  # results speak of the set's own ids
        scores["per_clip"] = {item_of.get(stem, stem): values for stem, values in scores.get("per_clip", {}).items()}
        return scores


@dataclass
class RunClips:
    """What the run scores as its generated side, from a model or a folder of audio made elsewhere."""

    folder: Path  # the run's generated/, one file per item named by its safe stem
    model_record: dict[str, Any]  # results.json "model"
    settings: dict[str, Any]  # results.json "settings" beyond seed and duration
    model: TextToMusicModel | None  # None for a folder of audio
    generation_settings: GenerationSettings | None
    load_seconds: float
    train_seconds: float | None
    unscored: dict[str, str] = field(default_factory=dict)  # item id -> why it has no generated clip


def set_options(entry: registry.Entry, options: dict[str, Any]) -> dict[str, Any]:
    """The set options a set takes; an option it does not take is a one-line error naming the flag."""
    import inspect

    given = {k: v for k, v in options.items() if v is not None}
    try:
        parameters = inspect.signature(entry.load()).parameters
    except (TypeError, ValueError):
        return given
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return given
    refused = [k for k in given if k not in parameters]
    if refused:
        takes = [f"--{k.replace('_', '-')}" for k in parameters if k not in entry.bound]
        raise FluxbenchError(f"--set {entry.name}: {', '.join('--' + k.replace('_', '-') for k in refused)} "
                             f"not taken by this set (it takes {', '.join(takes) or 'no options'})")
    return given


def _symlink(source: Path, target: Path) -> None:
    """Point `target` at `source`, replacing a stale link in one step."""
    if target.is_symlink() and os.readlink(target) == str(source):
        return
    temporary = target.with_name(f".{target.name}.{os.getpid()}.link")
    if temporary.is_symlink():
        temporary.unlink()
    os.symlink(source, temporary)
    os.replace(temporary, target)


def summary_table(results: dict[str, Any]) -> str:
    """A Markdown table of the set-level metrics (value, 95% CI) for stdout."""
    lines = [f"**{results['model']['name']}** on **{results['set']['name']}** "
             f"({results['set']['scored_items']}/{results['set']['items']} items scored)", "",
             "| metric | value | 95% CI | n |", "|---|---|---|---|"]
    for key, metric in results["metrics"].items():
        label = RESULT_KEYS[key].label if key in RESULT_KEYS else key
        ci = metric.get("ci95")
        ci_text = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "-"
        lines.append(f"| {label} | {metric['value']:.4g} | {ci_text} | {metric.get('n', '-')} |")
    timing = results.get("timing", {})
    if timing.get("train_s") is not None:
        lines += ["", f"training {timing['train_s']:.0f} s (when the model was trained), generation "
                      f"{timing['generate_s']:.0f} s, scoring {timing['score_s']:.0f} s"]
    clipped = results.get("scoring", {}).get("generated", {}).get("clipped_fraction")
    if clipped is not None:
        lines += ["", f"clipped samples in generated audio: {clipped:.3%}"]
    if results.get("anchors"):
        from fluxbench.anchors import anchor_table

        lines += ["", f"Anchor rows ({results['anchors']['n']} items, same backbone, no intervals; attribute "
                      f"accuracy read back from the audio):", "", anchor_table(results["anchors"])]
    if results["set"]["missing_references"]:
        lines += ["", f"missing reference audio: {len(results['set']['missing_references'])} items "
                      f"(listed in results.json)"]
    return "\n".join(lines)
