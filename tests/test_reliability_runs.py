"""Damaged state and hostile ids in runs, the clip store, generation and training.

Item ids from caption files never leave the run folder; a damaged stored or generated clip is made again;
training resumes past a damaged checkpoint and its model folder always holds the newest checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fluxbench.audio import AudioError, read_audio, write_wav
from fluxbench.cli import main as cli
from fluxbench.results import load_results
from fluxbench.runner import Runner
from fluxbench.store import ClipStore
from test_reliability_support import one_line_error
from test_runner import run_config
from test_train import manifest, tiny_config  # noqa: F401  (manifest is a fixture)


# ---- ids from caption files stay inside the run folder -----------------------------------------------------
def _musiccaps(tmp_path: Path, rows: list[tuple[str, str]], audio_ids: list[str]) -> tuple[Path, Path]:
    audio = tmp_path / "mc-audio"
    audio.mkdir()
    t = np.arange(int(16000 * 2.56)) / 16000
    for index, ytid in enumerate(audio_ids):
        write_wav(audio / f"{ytid}.wav", 0.3 * np.sin(2 * np.pi * (220 + 60 * index) * t), 16000)
    captions = tmp_path / "musiccaps-public.csv"
    with open(captions, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ytid", "start_s", "end_s", "caption", "is_balanced_subset", "is_audioset_eval"])
        writer.writerows([(ytid, 0, 10, caption, "True", "True") for ytid, caption in rows])
    return captions, audio


def test_crafted_set_ids_cannot_write_or_link_outside_the_run(model_folder, tmp_path):
    outside = tmp_path / "x"
    outside.mkdir()
    victim = outside / "victim.wav"
    victim.write_bytes(b"precious, not a clip")
    hostile = "../../../../" + str(outside.relative_to(outside.anchor) / "victim")
    # The same victim also sits where the hostile id points from the audio folder, so its "reference" would be
    # the very file the run writes.
    rows = [("yt000", "soft piano"), ("yt001", "loud drums"), (hostile, "a violin solo"), ("sub/dir", "an organ")]
    captions, audio = _musiccaps(tmp_path, rows, ["yt000", "yt001"])
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if "runs" not in p.parts}
    runner = Runner(run_config(model_folder, tmp_path, set="musiccaps", backbone="descriptor", duration=2.56,
                               set_options={"captions": str(captions), "audio_dir": str(audio)}))
    results = runner.run()

    assert victim.read_bytes() == b"precious, not a clip"
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if "runs" not in p.parts}
    assert after == before, "the run touched files outside its folder"
    generated = runner.run_dir / "generated"
    assert all(p.parent == generated for p in generated.rglob("*")), "a clip landed in a subfolder"
    assert len(list(generated.glob("*.wav"))) == 4
    for link in (runner.run_dir / "reference").iterdir():
        assert link.resolve().parent == audio.resolve()
    # Results keep the original ids; the crafted ones have no reference (they point outside the audio folder).
    assert set(results["set"]["captions"]) == {row[0] for row in rows}
    assert sorted(results["set"]["missing_references"]) == sorted([hostile, "sub/dir"])
    assert set(load_results(runner.run_dir / "results.json")["per_clip"]) <= {"yt000", "yt001"}


def test_export_replaces_in_one_step_and_never_follows_a_planted_link(tmp_path):
    store = ClipStore(tmp_path / "store")
    store.put("ab" * 32, np.zeros(1600, np.float32), 16000)
    elsewhere = tmp_path / "elsewhere.wav"
    elsewhere.write_bytes(b"not ours")
    target = tmp_path / "run" / "generated" / "a.wav"
    target.parent.mkdir(parents=True)
    target.symlink_to(elsewhere)
    store.export("ab" * 32, target)
    assert elsewhere.read_bytes() == b"not ours"
    assert not target.is_symlink() and os.path.samefile(target, store.path("ab" * 32))


# ---- a damaged stored or generated clip is made again ------------------------------------------------------
def test_store_verifies_size_and_checksum(tmp_path):
    store = ClipStore(tmp_path)
    key = "cd" * 32
    store.put(key, np.sin(np.arange(16000) / 9.0).astype(np.float32), 16000, {"prompt": "x"})
    assert store.has(key)
    record = json.loads(store.record_path(key).read_text())
    assert record["identity"] == {"prompt": "x"} and record["file"]["bytes"] == store.path(key).stat().st_size
    data = store.path(key).read_bytes()
    store.path(key).write_bytes(data[:len(data) // 2])
    assert not ClipStore(tmp_path).has(key)
    store.path(key).write_bytes(data[:-2] + b"\x7f\x7f")  # same size, other content
    assert not ClipStore(tmp_path).has(key)
    store.path(key).write_bytes(data)
    assert ClipStore(tmp_path).has(key)
    store.record_path(key).unlink()  # a clip without its record (killed between the two writes)
    assert not ClipStore(tmp_path).has(key)


def test_truncated_stored_clips_are_generated_again(model_folder, tmp_path):
    first = Runner(run_config(model_folder, tmp_path)).run()
    clips = sorted((tmp_path / "runs" / "store" / "clips").rglob("*.wav"))
    originals = {p: p.read_bytes() for p in clips}
    clips[0].write_bytes(originals[clips[0]][:len(originals[clips[0]]) // 2])
    clips[1].write_bytes(originals[clips[1]][:100])
    second = Runner(run_config(model_folder, tmp_path)).run()
    assert {p: p.read_bytes() for p in clips} == originals
    assert second["metrics"] == first["metrics"] and second["per_clip"] == first["per_clip"]
    assert all(m["n"] == second["set"]["scored_items"] for m in second["metrics"].values() if "n" in m)


def test_truncated_wav_is_refused_not_scored_short(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.sin(np.arange(32000) / 7.0), 16000)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(AudioError, match=r"truncated WAV \(header declares 64000 bytes"):
        read_audio(path)


def _generate_args(model_folder, out, *extra):
    return ["generate", "-q", "--model", str(model_folder), "--prompt", "soft piano", "--prompt", "loud drums",
            "--duration", "0.64", "--steps", "2", "--out", str(out), *extra]


def test_generate_resume_regenerates_damaged_clips_and_names_a_corrupt_sidecar(model_folder, tmp_path,
                                                                                capsys):
    out = tmp_path / "gen"
    assert cli(_generate_args(model_folder, out)) == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.wav")}
    (tmp_path / "original.wav").write_bytes(first["0000.wav"])
    (out / "0000.wav").write_bytes(first["0000.wav"][:len(first["0000.wav"]) // 2])
    assert cli(_generate_args(model_folder, out)) == 0
    assert (out / "0001.wav").read_bytes() == first["0001.wav"]  # intact: kept
    # Regenerated alone rather than in a batch of two: the same clip up to float rounding.
    again, original = read_audio(out / "0000.wav")[0], read_audio(tmp_path / "original.wav")[0]
    assert again.shape == original.shape and np.abs(again - original).max() < 1e-2

    (out / "generation.json").write_text('{"clips": [')
    err = one_line_error(capsys, cli(_generate_args(model_folder, out)))
    assert "generation.json" in err and "--overwrite" in err
    assert cli(_generate_args(model_folder, out, "--overwrite")) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.wav")} == first  # the same batches as the first run


def test_truncated_conditioner_weights_are_a_one_line_error(model_folder, tmp_path, capsys):
    import shutil

    folder = tmp_path / "damaged-model"
    shutil.copytree(model_folder, folder, ignore=shutil.ignore_patterns("checkpoints", "cache", "tensorboard"))
    weights = folder / "conditioner.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    err = one_line_error(capsys, cli(_generate_args(folder, tmp_path / "gen")))
    assert "conditioner.safetensors" in err


# ---- training: a lagging model folder, a damaged newest checkpoint, a loss row cut short -------------------
def _folder_step(folder: Path) -> int:
    return json.loads((folder / "fluxmusic.json").read_text())["training"]["step"]


def test_kill_after_the_last_checkpoint_leaves_no_stale_model_folder(tmp_path, manifest, monkeypatch):  # noqa: F811
    import fluxbench.models.fluxmusic.train_loop as training
    from fluxbench.models.fluxmusic.checkpoint import load_model_folder, load_state_dict

    config = tiny_config(manifest, tmp_path / "run", steps=6, save_every=3)
    export = training.export_model_folder

    def killed_at_the_end(out, transformer, ema, text_encoder, spec):
        if spec["training"]["step"] == 6:
            raise KeyboardInterrupt  # as if killed right after the step-6 checkpoint was written
        export(out, transformer, ema, text_encoder, spec)

    monkeypatch.setattr(training, "export_model_folder", killed_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, progress=False)
    assert _folder_step(tmp_path / "run") == 3
    monkeypatch.setattr(training, "export_model_folder", export)

    training.train(config, progress=False)  # nothing left to train: only the export catches up
    assert _folder_step(tmp_path / "run") == 6
    model, spec = load_model_folder(tmp_path / "run")
    assert spec["training"]["step"] == 6
    ema = load_state_dict(tmp_path / "run" / "checkpoints" / "step_0000006.pt", "ema")
    assert all(torch.equal(value, ema[key]) for key, value in model.state_dict().items())
    blob = torch.load(tmp_path / "run" / "checkpoints" / "step_0000006.pt", weights_only=True)
    from fluxbench.models.fluxmusic.vocab_conditioner import VocabConditioner

    encoder = VocabConditioner.from_spec(spec["conditioner"], tmp_path / "run")
    assert all(torch.equal(v, blob["conditioner_ema"][k]) for k, v in encoder.state_dict().items())


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, manifest, damage, caplog):  # noqa: F811
    from fluxbench.models.fluxmusic.train import read_losses, train

    straight = train(tiny_config(manifest, tmp_path / "straight", steps=9, save_every=3), progress=False)
    out = tmp_path / "damaged"
    train(tiny_config(manifest, out, steps=6, save_every=3), progress=False)
    newest = out / "checkpoints" / "step_0000006.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2] if damage == "truncate" else b"\x80\x04garbage" * 50)
    with caplog.at_level("WARNING", logger="fluxbench.train"):
        train(tiny_config(manifest, out, steps=9, save_every=3), progress=False)
    assert "step_0000006.pt" in caplog.text and "skipping" in caplog.text
    assert (out / "checkpoints" / "step_0000006.pt.unreadable").is_file()
    assert [r["loss"] for r in read_losses(out)] == [r["loss"] for r in read_losses(straight)]
    a = torch.load(straight / "checkpoints" / "step_0000009.pt", weights_only=True)
    b = torch.load(out / "checkpoints" / "step_0000009.pt", weights_only=True)
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_resume_drops_a_loss_row_cut_short_by_a_kill(tmp_path, manifest):  # noqa: F811
    from fluxbench.models.fluxmusic.train import read_losses, train

    config = tiny_config(manifest, tmp_path / "run", steps=6, save_every=3)
    train(config, progress=False, stop_after=4)  # checkpoint at 3, loss rows 1-4
    log = tmp_path / "run" / "loss.csv"
    log.write_text(log.read_text() + "1")  # the append of a later step (10, 11, ...) cut after its first digit
    train(config, progress=False)
    assert [int(r["step"]) for r in read_losses(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]
