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

from fluxbench.audio import read_audio, write_wav
from fluxbench.results import load_results
from fluxbench.runner import RunConfig, Runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A real FluxMusic model folder (mel codec, vocabulary text encoder), trained for two steps."""
    from fluxbench.models.fluxmusic.train import demo_config, train

    root = tmp_path_factory.mktemp("model")
    config = demo_config(out=str(root / "model"), clips=8, steps=2, global_batch=4, micro_batch=4, save_every=2)
    return train(config, device_choice="cpu", progress=False)


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
    assert on_disk["set"] == {"name": "demo", "items": 6, "scored_items": 6, "missing_references": [], "limit": None}
    assert len(captions) == 6 and all(isinstance(c, str) and c for c in captions.values())
    assert on_disk["settings"]["steps"] == 2 and on_disk["settings"]["seed"] == 0
    assert on_disk["model"]["fingerprint"].startswith(Path(model_folder).name)
    assert on_disk["model"]["weights"] and all(len(v) == 64 for v in on_disk["model"]["weights"].values())
    assert on_disk["environment"]["torch"] and on_disk["environment"]["fluxbench"]
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


def test_manual_shards_then_plain_run_equals_single(model_folder, tmp_path):
    single = Runner(run_config(model_folder, tmp_path, out=str(tmp_path / "one"))).run()
    for index in range(2):
        assert Runner(run_config(model_folder, tmp_path, out=str(tmp_path / "sharded"), shard=(index, 2))).run() is None
    combined = Runner(run_config(model_folder, tmp_path, out=str(tmp_path / "sharded"))).run()
    assert combined["metrics"] == single["metrics"] and combined["per_clip"] == single["per_clip"]


def test_missing_reference_audio_is_counted(model_folder, tmp_path):
    audio = tmp_path / "mc-audio"
    rows = []
    for index, caption in enumerate(["soft piano", "loud drums", "a violin solo", "a sad organ"]):
        ytid = f"yt{index:03d}"
        rows.append({"ytid": ytid, "start_s": 0, "end_s": 10, "caption": caption, "is_balanced_subset": "False",
                     "is_audioset_eval": "True"})
        if index != 2:  # one clip missing locally
            t = np.arange(int(16000 * 2.56)) / 16000
            write_wav(audio / f"{ytid}.wav", 0.3 * np.sin(2 * np.pi * (220 + 60 * index) * t), 16000)
    captions = tmp_path / "musiccaps-public.csv"
    with open(captions, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    results = Runner(run_config(model_folder, tmp_path, set="musiccaps", backbone="descriptor", duration=2.56,
                                set_options={"captions": str(captions), "audio_dir": str(audio)})).run()
    assert results["set"]["items"] == 4 and results["set"]["scored_items"] == 3
    assert results["set"]["missing_references"] == ["yt002"]
    assert "yt002" not in results["per_clip"]


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
    folder, missing = runner.prepare_references(LongRefs(), list(LongRefs().items()), duration=2.0)
    cropped, rate = read_audio(folder / "a.wav")
    start = (len(long) - 32000) // 2
    assert missing == [] and cropped.shape[-1] == 32000
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


def test_released_sizes_without_weights_fail_with_the_missing_files(tmp_path):
    """`run --model fluxmusic-small` reaches the weights resolution and names what is missing, in one line."""
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "FLUXBENCH_CACHE": str(tmp_path / "cache")}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLUXBENCH_")}, **env}
    result = subprocess.run([sys.executable, "-m", "fluxbench.cli", "run", "--model", "fluxmusic-small", "--set",
                             "demo", "--limit", "2", "--out", str(tmp_path / "runs"), "--quiet"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0
    assert "missing weights" in result.stderr and "feizhengcong/FluxMusic" in result.stderr
