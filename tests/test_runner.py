"""`fluxbench run` end to end on a tiny trained FluxMusic and the demo set: results, resume, sharding, errors."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fluxbench import FluxbenchError
from fluxbench.audio import read_audio, write_wav
from fluxbench.results import load_results
from fluxbench.protocols.sets.demo_synth import SYNTH_VERSION
from fluxbench.runner import RunConfig, Runner

ROOT = Path(__file__).resolve().parents[1]


def demo_options(tmp_path, size=6):
    return {"size": size, "root": str(tmp_path / "demo-set")}


def run_config(model_folder, tmp_path, **overrides):
    values = dict(model=str(model_folder), set="demo", set_options=demo_options(tmp_path), batch_size=2,
                  generation={"steps": 2}, bootstrap=20, out=str(tmp_path / "runs"), progress=False, anchors=False)
    values.update(overrides)
    return RunConfig(**values)


def cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "fluxbench.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, **kwargs)


def test_run_writes_complete_results(model_folder, tmp_path):
    runner = Runner(run_config(model_folder, tmp_path))
    results = runner.run()
    on_disk = load_results(runner.run_dir / "results.json")
    assert on_disk["metrics"] == json.loads(json.dumps(results["metrics"]))
    captions = on_disk["set"].pop("captions")
    assert on_disk["set"] == {"name": "demo", "subset": None, "items": 6, "scored_items": 6, "missing_references": [],
                              "unscored": {}, "limit": None, "reference_crop": "none", "captions_file": None,
                              "captions_sha256": None, "source": {"split": "heldout", "size": 6, "corpus_seed": 0,
                                                                  "synth_version": SYNTH_VERSION}}
    assert len(captions) == 6 and all(isinstance(c, str) and c for c in captions.values())
    assert on_disk["settings"]["steps"] == 2 and on_disk["settings"]["seed"] == 0
    assert on_disk["model"]["fingerprint"].startswith(Path(model_folder).name)
    assert on_disk["model"]["weights"] and all(len(v) == 64 for v in on_disk["model"]["weights"].values())
    assert on_disk["environment"]["torch"] and on_disk["environment"]["fluxbench"]
    # provenance: versions of the hub libraries, the checkout's commit, a model folder's size
    from importlib.metadata import version

    environment = on_disk["environment"]
    assert (environment["transformers"], environment["diffusers"]) == (version("transformers"), version("diffusers"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert environment["fluxbench_commit"] in (head, head + "-dirty")
    from safetensors.torch import load_file

    stored = load_file(str(Path(model_folder) / "transformer.safetensors"))
    assert on_disk["model"]["parameters"] == sum(tensor.numel() for tensor in stored.values())
    assert {"preflight_s", "load_model_s", "train_s", "generate_s", "score_s"} <= set(on_disk["timing"])
    assert on_disk["metrics"], "no metric computed"
    for key, metric in on_disk["metrics"].items():
        assert np.isfinite(metric["value"]), key
    generated = sorted((runner.run_dir / "generated").glob("*.wav"))
    assert [p.stem for p in generated] == [f"demo-heldout-{i:05d}" for i in range(6)]
    audio, rate = read_audio(generated[0])
    assert rate == 16000 and audio.shape[-1] == round(2.56 * 16000) and np.abs(audio).max() > 0


def test_rerun_reuses_every_clip(model_folder, tmp_path):
    first = Runner(run_config(model_folder, tmp_path)).run()
    store = tmp_path / "runs" / "store" / "clips"
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*.wav")}
    second = Runner(run_config(model_folder, tmp_path)).run()
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.wav")} == stamps
    assert first["metrics"] == second["metrics"]


def _run_args(model_folder, tmp_path, out, *extra):
    return ["run", "--model", str(model_folder), "--set", "demo", "--batch-size", "2", "--bootstrap", "20",
            "--out", str(out), "--name", "r", "--quiet", "--no-anchors", *extra]


def _demo_env(tmp_path):
    return {"FLUXBENCH_CACHE": str(tmp_path / "cache")}  # the demo set renders its clips under the cache


@pytest.mark.slow
def test_kill_nine_then_resume_equals_uninterrupted(model_folder, tmp_path):
    steps = ["--steps", "30", "--limit", "8"]
    env = _demo_env(tmp_path)
    reference = cli(*_run_args(model_folder, tmp_path, tmp_path / "plain", *steps), env=env)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "fluxbench.cli", *_run_args(model_folder, tmp_path, out, *steps)],
                               cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "store").rglob("*.wav")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = len(list((out / "store").rglob("*.wav")))
    assert 0 < stored < 8, f"kill landed after {stored} of 8 clips; the test needs a mid-run kill"
    assert not (out / "r" / "results.json").exists()
    resumed = cli(*_run_args(model_folder, tmp_path, out, *steps), env=env)
    assert resumed.returncode == 0, resumed.stderr
    plain, again = load_results(tmp_path / "plain" / "r"), load_results(out / "r")
    assert again["metrics"] == plain["metrics"] and again["per_clip"] == plain["per_clip"]
    for wav in (tmp_path / "plain" / "r" / "generated").glob("*.wav"):
        assert wav.read_bytes() == (out / "r" / "generated" / wav.name).read_bytes()


@pytest.mark.slow
def test_two_process_torchrun_equals_one_process(model_folder, tmp_path):
    env = _demo_env(tmp_path)
    args = ["--limit", "8", "--steps", "3"]
    single = cli(*_run_args(model_folder, tmp_path, tmp_path / "one", *args), env=env)
    assert single.returncode == 0, single.stderr
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
         "--master-port", str(29500 + os.getpid() % 1000), "-m", "fluxbench.cli",
         *_run_args(model_folder, tmp_path, tmp_path / "two", *args)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    one, two = load_results(tmp_path / "one" / "r"), load_results(tmp_path / "two" / "r")
    assert one["metrics"] == two["metrics"] and one["per_clip"] == two["per_clip"]


def test_generate_and_run_give_identical_audio(model_folder, tmp_path):
    """One generation path: the same prompt id, caption, seed and settings give the same bytes through `run` and
    `generate` (each with its own clip store, so both really generate)."""
    from fluxbench import registry
    from fluxbench.cli import main

    runner = Runner(run_config(model_folder, tmp_path, seed=5, limit=4))
    runner.run()
    eval_set = registry.get("set", "demo").create(**demo_options(tmp_path))
    items = list(eval_set.items())[:4]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"id": item.id, "caption": item.caption}) for item in items))
    out = tmp_path / "generated"
    assert main(["generate", "-q", "--model", str(model_folder), "--prompts-file", str(prompts), "--out", str(out),
                 "--seed", "5", "--steps", "2", "--duration", str(eval_set.duration), "--batch-size", "2"]) == 0
    for item in items:
        from_run = (runner.run_dir / "generated" / f"{item.id}.wav").read_bytes()
        assert (out / f"{item.id}.wav").read_bytes() == from_run, item.id
    sidecar = json.loads((out / "generation.json").read_text())
    stored = json.loads(runner.store.record_path(sidecar["clips"][0]["key"]).read_text())
    assert stored["identity"]["seed"] == sidecar["clips"][0]["seed"]  # the same clip key in both stores


def test_manual_shards_then_plain_run_equals_single(model_folder, tmp_path):
    single = Runner(run_config(model_folder, tmp_path, out=str(tmp_path / "one"))).run()
    for index in range(2):
        assert Runner(run_config(model_folder, tmp_path, out=str(tmp_path / "sharded"), shard=(index, 2))).run() is None
    combined = Runner(run_config(model_folder, tmp_path, out=str(tmp_path / "sharded"))).run()
    assert combined["metrics"] == single["metrics"] and combined["per_clip"] == single["per_clip"]


@pytest.mark.parametrize("crop", ["none", "center"])
def test_references_scoring_could_not_read_are_accounted(model_folder, tmp_path, crop):
    """Absent, unsupported (.m4a) and unreadable references are listed with why, and not scored."""
    import hashlib

    audio = tmp_path / "mc-audio"
    rows = []
    captions = ["soft piano", "loud drums", "a violin solo", "a sad organ", "a brass band", "a flute duet"]
    for index, caption in enumerate(captions):
        ytid = f"yt{index:03d}"
        rows.append({"ytid": ytid, "start_s": 0, "end_s": 10, "caption": caption, "is_balanced_subset": "False",
                     "is_audioset_eval": "True"})
        t = np.arange(int(16000 * 2.56)) / 16000
        if index in (0, 1, 5):
            write_wav(audio / f"{ytid}.wav", 0.3 * np.sin(2 * np.pi * (220 + 60 * index) * t), 16000)
    (audio / "yt003.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))  # an AAC file's header
    (audio / "yt004.wav").write_bytes(b"RIFF" + bytes(40))  # truncated: unreadable
    captions_file = tmp_path / "musiccaps-public.csv"
    with open(captions_file, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    results = Runner(run_config(model_folder, tmp_path, set="musiccaps", backbone="descriptor", duration=2.56,
                                reference_crop=crop, set_options={"captions": str(captions_file),
                                                                  "audio_dir": str(audio)})).run()
    assert results["set"]["items"] == 6 and results["set"]["scored_items"] == 3
    assert results["set"]["missing_references"] == ["yt002", "yt003", "yt004"]
    unscored = results["set"]["unscored"]
    assert unscored["yt002"] == "no reference file"
    assert "unsupported format .m4a" in unscored["yt003"] and "yt004.wav" in unscored["yt004"]
    assert set(results["per_clip"]) == {"yt000", "yt001", "yt005"}
    assert {metric["n"] for metric in results["metrics"].values()} == {3}
    assert results["scoring"]["reference"]["scored"] == 3 and results["scoring"]["generated"]["scored"] == 3
    # provenance of the set: subset, crop and the caption file actually used
    assert (results["set"]["subset"], results["set"]["reference_crop"]) == ("all", crop)
    assert results["set"]["captions_sha256"] == hashlib.sha256(captions_file.read_bytes()).hexdigest()


def test_unknown_names_are_one_line_errors():
    for args, expected in ((["run", "--model", "fluxmusic-smal"], "did you mean 'fluxmusic-small'"),
                           (["run", "--set", "musicaps"], "did you mean 'musiccaps'")):
        result = cli(*args)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0 and expected in result.stderr


def test_center_crop_of_long_references(model_folder, tmp_path):
    from fluxbench.protocols.sets.base import EvalSet, SetItem

    long = np.sin(np.arange(16000 * 6) / 50.0).astype(np.float32) * 0.5
    write_wav(tmp_path / "long.wav", long, 16000)

    class LongRefs(EvalSet):
        name, reference_crop = "long", "center"

        def items(self):
            yield SetItem("a", "x", tmp_path / "long.wav")

    runner = Runner(run_config(model_folder, tmp_path))
    folder, unscored = runner.prepare_references(LongRefs(), list(LongRefs().items()), duration=2.0)
    cropped, rate = read_audio(folder / "a.wav")
    start = (len(long) - 32000) // 2
    assert unscored == {} and cropped.shape[-1] == 32000
    assert np.allclose(cropped[0], long[start:start + 32000], atol=1 / 32768)


def test_demo_model_resumes_an_unfinished_training(tmp_path, monkeypatch):
    """A demo model folder left by an interrupted training is finished, not used half-trained."""
    import fluxbench.models.fluxmusic.train as training
    from fluxbench.models.fluxmusic.demo import _finished, load_demo_model

    small = dict(clips=8, steps=4, global_batch=4, micro_batch=4, save_every=2)
    folder = tmp_path / "demo-model"
    training.train(training.demo_config(out=str(folder), **small), device_choice="cpu", progress=False, stop_after=2)
    assert (folder / "fluxmusic.json").is_file() and not _finished(folder / "fluxmusic.json")

    calls, original = [], training.demo_config
    monkeypatch.setattr(training, "demo_config", lambda out: calls.append(out) or original(out=out, **small))
    model = load_demo_model(folder, device="cpu", progress=False)
    assert calls == [str(folder)] and _finished(folder / "fluxmusic.json")
    assert model.name == "fluxmusic-demo"


def test_a_demo_model_from_an_older_recipe_is_named_with_what_changed(tmp_path, monkeypatch, caplog):
    import json
    import logging

    import fluxbench.models.fluxmusic.train as training
    from fluxbench.models.fluxmusic.demo import load_demo_model

    monkeypatch.setenv("FLUXBENCH_CACHE", str(tmp_path / "cache"))
    small = dict(clips=8, steps=2, global_batch=4, micro_batch=4, save_every=2)
    folder = tmp_path / "demo-model"
    training.train(training.demo_config(out=str(folder), **small), device_choice="cpu", progress=False)
    original = training.demo_config
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING):
        patch.setattr(training, "demo_config", lambda out, **extra: original(out=out, **{**small, **extra}))
        load_demo_model(folder, device="cpu", progress=False)
    assert "demo recipe changed" not in caplog.text  # trained with the recipe in force: no warning

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_demo_model(folder, device="cpu", progress=False)  # today's recipe has batches of 8
    assert "demo recipe changed (global_batch, micro_batch)" in caplog.text and str(folder) in caplog.text

    config = json.loads((folder / "train.json").read_text())
    from fluxbench.protocols.sets.demo_synth import SYNTH_VERSION

    # a corpus version that no longer exists
    config["manifest"] = config["manifest"].replace(f"v{SYNTH_VERSION}-seed", f"v{SYNTH_VERSION - 1}-seed")
    (folder / "train.json").write_text(json.dumps(config))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_demo_model(folder, device="cpu", progress=False)
    assert "demo corpus version" in caplog.text

    (folder / "fluxmusic.json").write_text("{ not json")  # a damaged folder is named, not a traceback
    with pytest.raises(FluxbenchError, match="fluxmusic.json: invalid JSON"):
        load_demo_model(folder, device="cpu", progress=False)


def _no_weights_env(tmp_path, offline=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXBENCH_", "HF_"))}
    env.update({"HF_HUB_CACHE": str(tmp_path / "hub"), "FLUXBENCH_CACHE": str(tmp_path / "cache")})
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


# What `run --model fluxmusic-small --set musiccaps` needs besides the captions and the audio: (environment
# variable, file or folder under --weights-dir) per part, from the README's weights tables.
SMALL_ON_MUSICCAPS = [("FLUXBENCH_FLUXMUSIC_SMALL", "FluxMusic/musicflow_s.pt"),
                      ("FLUXBENCH_T5", "stable-diffusion-3-medium-diffusers"), ("FLUXBENCH_CLAP", "larger_clap_music"),
                      ("FLUXBENCH_AUDIOLDM2_VAE", "audioldm2/vae"),
                      ("FLUXBENCH_AUDIOLDM2_VOCODER", "audioldm2/vocoder"),
                      ("FLUXBENCH_VGGISH", "vggish-10086976.pth"), ("FLUXBENCH_PANNS_16K", "Cnn14_16k_mAP=0.438.pth")]


def test_preflight_lists_every_missing_part_before_generating(tmp_path):
    """Offline with nothing local: one error, a line per missing part (hub id, variable, weights-dir path)."""
    audio, weights = tmp_path / "audio", tmp_path / "weights"
    for ytid in ("-0Gj8-vB1q4", "-0SdAVK79lg"):  # 2 of the first 3 MusicCaps clips
        write_wav(audio / f"{ytid}.wav", np.zeros(16000), 16000)
    (weights / "vggish-10086976.pth").parent.mkdir(parents=True)
    (weights / "vggish-10086976.pth").write_bytes(b"x")  # present under --weights-dir: not listed
    out = tmp_path / "runs"
    result = subprocess.run([sys.executable, "-m", "fluxbench.cli", "run", "--model", "fluxmusic-small", "--set",
                             "musiccaps", "--audio-dir", str(audio), "--limit", "3", "--weights-dir", str(weights),
                             "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                            env=_no_weights_env(tmp_path), timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index("fluxbench run: error:"):].splitlines()
    assert "7 part(s) missing (offline mode)" in error[0] and "nothing generated" in error[0]
    listed = error[1:]
    assert len(listed) == 7, listed
    for variable, local_name in SMALL_ON_MUSICCAPS:
        lines = [line for line in listed if f"set {variable}=PATH" in line]
        if variable == "FLUXBENCH_VGGISH":
            assert not lines
            continue
        assert len(lines) == (2 if variable == "FLUXBENCH_CLAP" else 1), variable  # CLAP: conditioning and scoring
        assert all(f"{weights}/{local_name}" in line for line in lines), lines
    assert any("hf://feizhengcong/FluxMusic/musicflow_s.pt" in line for line in listed)
    # what is in place is logged before: the shipped captions, the references counted
    assert "3 items, subset all" in result.stderr and "sha256 verified" in result.stderr
    assert "2 of 3 present, 1 missing (e.g. -0vPFx-wRRI)" in result.stderr
    assert not (out / "store").exists()  # nothing generated


def test_preflight_detects_an_unreachable_hub_once_and_counts_disk(tmp_path, monkeypatch):
    """Online mode without network: each server is tried once, nothing is downloaded; too little disk is listed."""
    import socket

    from fluxbench import preflight, weights
    from fluxbench.models.fluxmusic.weight_sources import CLAP_MUSIC
    from fluxbench.preflight import PreflightError

    for variable in ("HF_HUB_OFFLINE", "FLUXBENCH_OFFLINE", "FLUXBENCH_WEIGHTS_DIR", "HF_ENDPOINT",
                     "FLUXBENCH_MUSICCAPS_CAPTIONS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    attempts = []

    def refuse(address, timeout=None):
        attempts.append(address[0])
        raise OSError("network is unreachable")

    def no_download(source):
        raise AssertionError(f"tried to download {source.name}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(weights, "_reachable", {})
    monkeypatch.setattr(weights, "_download", no_download)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: shutil_usage(free=10_000))
    write_wav(tmp_path / "audio" / "-0Gj8-vB1q4.wav", np.zeros(16000), 16000)
    write_wav(tmp_path / "audio" / "-0SdAVK79lg.wav", np.zeros(16000), 16000)
    config = RunConfig(model="fluxmusic-small", set="musiccaps", limit=3, out=str(tmp_path / "runs"),
                       set_options={"audio_dir": str(tmp_path / "audio")}, progress=False)
    with pytest.raises(PreflightError) as raised:
        Runner(config).run()
    message = str(raised.value)
    assert message.count("[huggingface.co unreachable]") == 6  # 5 generation parts + the CLAP scorer
    assert "[zenodo.org unreachable]" in message and "[github.com unreachable]" in message
    assert sorted(attempts) == ["github.com", "huggingface.co", "zenodo.org"]  # once per server
    assert "disk: about" in message and "10.0 KB free" in message
    # the loaders that run later ask no server again
    with pytest.raises(weights.MissingWeightsError, match="huggingface.co unreachable"):
        weights.resolve(CLAP_MUSIC)
    assert len(attempts) == 3


def test_preflight_lists_missing_captions_with_the_weights_and_rejects_bad_options_at_once(tmp_path, monkeypatch):
    from fluxbench.preflight import PreflightError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("FLUXBENCH_SONG_DESCRIBER_CAPTIONS", raising=False)
    config = RunConfig(model="fluxmusic-small", set="song-describer", out=str(tmp_path / "runs"), progress=False,
                       set_options={"audio_dir": str(tmp_path), "captions": str(tmp_path / "absent.csv")})
    with pytest.raises(PreflightError) as raised:
        Runner(config).run()
    lines = str(raised.value).splitlines()[1:]
    assert lines[0].startswith("  captions: song-describer: caption file ") and "absent.csv not found" in lines[0]
    assert any("FluxMusic-small checkpoint" in line for line in lines) and len(lines) == 9
    bad = RunConfig(set="musiccaps", set_options={"subset": "eval"}, out=str(tmp_path / "runs"))
    with pytest.raises(FluxbenchError, match="unknown subset 'eval'") as raised:
        Runner(bad).run()
    assert not isinstance(raised.value, PreflightError)


def shutil_usage(free):
    import shutil

    return shutil._ntuple_diskusage(10 ** 12, 10 ** 12 - free, free)


def test_runs_are_named_after_the_model_and_land_under_out(model_folder, tmp_path, monkeypatch):
    """`--model runs/my-model` (or an absolute path) gives <out>/my-model-<set>-seed<seed>, where `report` looks."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(model_folder, tmp_path / "runs" / "my-model")
    out = tmp_path / "results"
    for given in ("runs/my-model", str(tmp_path / "runs" / "my-model"), "runs/my-model/"):
        runner = Runner(RunConfig(model=given, set="demo", out=str(out)))
        assert runner.run_dir == out / "my-model-demo-seed0", given
    assert Runner(RunConfig(model="fluxmusic-small", set="musiccaps", limit=8, out=str(out))).run_dir == \
        out / "fluxmusic-small-musiccaps-seed0-n8"
    for name in ("../elsewhere", "a/b", ".hidden", "/tmp/x"):
        with pytest.raises(FluxbenchError, match="plain folder name"):
            Runner(RunConfig(name=name, out=str(out)))
