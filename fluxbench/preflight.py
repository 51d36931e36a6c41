"""What a benchmark run needs, checked in seconds before anything long starts.

`fluxbench run` generates for minutes to hours before it scores, so every part is looked at first: the
set's captions, its reference audio (present, missing, in an unsupported format), the generation weights of
the model, the weights of the scoring backbones the requested metrics use, and free disk for the clips.
Weights are only located (explicit path, environment variable, weights dir, HF cache), never downloaded here;
a part that is not local counts as available when its server answers (one short try per host), and as
missing in offline mode or when the server is unreachable. One error lists every missing part, a line each.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxbench import FluxbenchError, weights

WAV_HEADER_BYTES = 44
CLIP_SIDECAR_BYTES = 1024  # the identity JSON stored beside each clip
REFERENCE_RATE, REFERENCE_CHANNELS = 48_000, 2  # upper bound for cropped references, whose format is unknown yet

log = logging.getLogger(__name__)


class PreflightError(FluxbenchError):
    pass


@dataclass(frozen=True)
class Part:
    status: str  # ok | download | missing
    what: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<8} {self.what}: {self.detail}"


def model_weight_requests(entry, options: dict[str, Any]) -> list[tuple[weights.WeightSource, str | None]]:
    """The downloadable components loading this model resolves, as its model class declares them
    (`TextToMusicModel.weight_requests`); none for models trained here on first use."""
    from fluxbench.models.base import factory_weight_requests

    return factory_weight_requests(entry.load(), **{**entry.bound, **options})


def weight_parts(requests, root: str | os.PathLike | None, role: str) -> list[Part]:
    """One part per component: found locally, to be downloaded, or missing with how to supply it."""
    folder = weights.weights_dir(root)
    parts = []
    for source, explicit in requests:
        what = f"{role} {source.name}"
        try:
            path = weights.locate(source, explicit, folder)
        except weights.MissingWeightsError as error:
            parts.append(Part("missing", what, str(error)))
            continue
        if path is not None:
            parts.append(Part("ok", what, str(path)))
        elif weights.offline():
            parts.append(Part("missing", what, weights.supply_hint(source, folder) + " [offline mode]"))
        elif not weights.reachable(source):
            parts.append(Part("missing", what, weights.supply_hint(source, folder)
                              + f" [{weights.server_of(source)} unreachable]"))
        else:
            parts.append(Part("download", what, f"{source.where} (not local; downloaded on first use)"))
    return parts


def reference_part(items, audio_dir: str | os.PathLike | None = None) -> Part:
    """Reference clips present, missing and in an unsupported format; missing when fewer than 2 are usable."""
    from fluxbench.audio import unsupported_format

    counts = {"present": 0, "missing": 0, "unsupported": 0}
    example: dict[str, str] = {}
    for item in items:
        reference = item.reference
        if reference is None or not Path(reference).is_file():
            counts["missing"] += 1
            example.setdefault("missing", item.id)
        elif unsupported_format(reference):
            counts["unsupported"] += 1
            example.setdefault("unsupported", Path(reference).name)
        else:
            counts["present"] += 1
    detail = (f"{counts['present']} of {len(items)} present, {counts['missing']} missing"
              + (f" (e.g. {example['missing']})" if "missing" in example else "")
              + f", {counts['unsupported']} in an unsupported format"
              + (f" (e.g. {example['unsupported']})" if "unsupported" in example else ""))
    if audio_dir is not None:
        detail += f" in {audio_dir}"
    status = "ok" if counts["present"] >= 2 else "missing"
    if status == "missing":
        detail += ("; metrics need at least 2: point --audio-dir at the set's audio" if audio_dir is None else
                   "; metrics need at least 2: is that the set's audio folder?")
    return Part(status, "reference audio", detail)


def disk_part(out: str | os.PathLike, clips: int, duration: float, sample_rate: int, references: int,
              crop: bool) -> Part:
    """Generated clips are 16-bit mono WAV in the store (the run folder holds hard links to them)."""
    needed = clips * (int(duration * sample_rate) * 2 + WAV_HEADER_BYTES + CLIP_SIDECAR_BYTES)
    if crop:  # cropped references are written as WAV copies
        needed += references * int(duration * REFERENCE_RATE) * 2 * REFERENCE_CHANNELS
    target = Path(out).absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    free = shutil.disk_usage(target).free
    detail = f"about {_size(needed)} for {clips} clips under {out}, {_size(free)} free"
    return Part("ok" if free >= needed else "missing", "disk", detail)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def report(parts: list[Part], title: str) -> None:
    """Log what is in place; raise one error listing every missing part, a line each."""
    in_place = [part for part in parts if part.status != "missing"]
    if in_place:
        log.info("pre-flight, %s:\n%s", title, "\n".join("  " + part.line() for part in in_place))
    missing = [part for part in parts if part.status == "missing"]
    if missing:
        mode = " (offline mode)" if weights.offline() else ""
        raise PreflightError(f"cannot run {title}: {len(missing)} part(s) missing{mode}, nothing generated yet:\n"
                             + "\n".join(f"  {part.what}: {part.detail}" for part in missing))
