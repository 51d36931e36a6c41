"""The trainer on a tiny FluxMusic and a few short demo clips: exact resume, checkpoints, DDP, dropout, EMA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fluxbench import FluxbenchError
from fluxbench.models.fluxmusic.checkpoint import load_model_folder, load_state_dict, load_transformer
from fluxbench.models.fluxmusic.conditioner import TextConditioning
from fluxbench.models.fluxmusic.train import (EMA, SampleStream, TrainConfig, TrainingError, TrainingStep,
                                              read_losses, read_manifest, train)
from fluxbench.models.fluxmusic.vocab_conditioner import VocabConditioner
from fluxbench.protocols.sets.demo import DemoSet

CLIP_SECONDS = 0.32  # 32 mel frames; folded 4 x 8 -> 32 channels x 8 x 8 -> 16 music tokens


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    return DemoSet("train", size=12, seed=3, duration=CLIP_SECONDS, root=root).write_manifest()


def tiny_config(manifest: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(manifest=str(manifest), out=str(out), size="tiny",
                  conditioner={"kind": "vocab", "context_dim": 48, "vector_dim": 32, "max_tokens": 24},
                  codec={"kind": "mel", "time_fold": 4, "freq_fold": 8}, duration=CLIP_SECONDS, normalize=False,
                  steps=6, global_batch=4, micro_batch=2, lr=1e-3, ema_decay=0.9, ema_every=2, save_every=3)
    values.update(overrides)
    return TrainConfig.from_dict(values)


# ---- manifest -------------------------------------------------------------------------------------------
def test_manifest_formats_and_errors(tmp_path, manifest):
    records = read_manifest(manifest)
    assert len(records) == 12 and all(len(r.captions) == 3 and Path(r.path).is_file() for r in records)

    official = tmp_path / "official.json"  # the official loader's layout: a JSON list of {"wav", "label"}
    official.write_text(json.dumps([{"wav": "clips/a.wav", "label": "a calm piano"}]))
    (record,) = read_manifest(official)
    assert record.path == str(tmp_path / "clips" / "a.wav") and record.captions == ("a calm piano",)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a.wav", "caption": "x"}\n{"caption": "no audio"}\n')
    with pytest.raises(FluxbenchError, match=r"bad.jsonl:2: missing field 'path'"):
        read_manifest(bad)
    bad.write_text('{"path": "a.wav", "caption": "x"\n')
    with pytest.raises(FluxbenchError, match=r"bad.jsonl:1: invalid JSON"):
        read_manifest(bad)
    with pytest.raises(FluxbenchError, match="no such manifest"):
        read_manifest(tmp_path / "missing.jsonl")


# ---- the loop -------------------------------------------------------------------------------------------
def test_resume_after_interruption_gives_identical_losses_and_weights(tmp_path, manifest):
    straight = train(tiny_config(manifest, tmp_path / "straight"), progress=False)
    interrupted = tiny_config(manifest, tmp_path / "resumed")
    train(interrupted, progress=False, stop_after=3)
    assert [int(r["step"]) for r in read_losses(tmp_path / "resumed")] == [1, 2, 3]
    train(interrupted, progress=False)

    expected, resumed = read_losses(straight), read_losses(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in expected]
    assert [r["grad_norm"] for r in resumed] == [r["grad_norm"] for r in expected]
    a = torch.load(straight / "checkpoints" / "step_0000006.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "step_0000006.pt", weights_only=True)
    for entry in ("ema", "model", "conditioner", "conditioner_ema"):
        assert a[entry].keys() == b[entry].keys()
        assert all(torch.equal(a[entry][k], b[entry][k]) for k in a[entry]), entry
    assert a["opt"]["state"].keys() == b["opt"]["state"].keys()
    assert all(torch.equal(a["opt"]["state"][i]["exp_avg_sq"], b["opt"]["state"][i]["exp_avg_sq"])
               for i in a["opt"]["state"])


def test_checkpoint_layout_and_model_folder_load_back(tmp_path, manifest):
    out = train(tiny_config(manifest, tmp_path / "run", steps=4, save_every=2, keep_checkpoints=1), progress=False)
    checkpoints = sorted((out / "checkpoints").glob("*.pt"))
    assert [c.name for c in checkpoints] == ["step_0000004.pt"]  # older ones pruned
    blob = torch.load(checkpoints[0], weights_only=True)  # no pickled code needed
    assert {"ema", "model", "opt", "scheduler", "step", "rng", "config", "conditioner",
            "conditioner_ema"} <= blob.keys()
    assert blob["step"] == 4 and blob["ema"].keys() == blob["model"].keys()
    # EMA (decay 0.9, updated at steps 2 and 4) differs from the raw weights.
    assert any(not torch.equal(blob["ema"][k], blob["model"][k]) for k in blob["ema"])

    # The official way: read ["ema"] into the transformer.
    transformer_config = json.loads((out / "fluxmusic.json").read_text())["transformer"]
    official = load_transformer(checkpoints[0], transformer_config)
    # The model folder holds the same EMA weights as safetensors, plus the trained text encoder.
    folder_model, spec = load_model_folder(out)
    for key, value in official.state_dict().items():
        assert torch.equal(value, folder_model.state_dict()[key])
    assert spec["objective"] == "rectified_flow" and spec["codec"]["kind"] == "mel"
    assert spec["latent_shape"] == [32, 8, 8] and spec["training"]["step"] == 4
    encoder = VocabConditioner.from_spec(spec["conditioner"], out)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, blob["conditioner_ema"][key])
    assert transformer_config["in_channels"] == 128 and transformer_config["context_in_dim"] == 48
    rows = read_losses(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and all(r["samples"] == 4 * r["step"] for r in rows)


def test_loss_falls_and_ddpm_objective_trains(tmp_path, manifest):
    out = train(tiny_config(manifest, tmp_path / "rf", steps=30, global_batch=4, micro_batch=4, save_every=30),
                progress=False)
    losses = [r["loss"] for r in read_losses(out)]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5

    ddpm = train(tiny_config(manifest, tmp_path / "ddpm", objective="ddpm", steps=2), progress=False)
    _, spec = load_model_folder(ddpm)
    assert spec["objective"] == "ddpm"
    assert spec["objective_options"] == {"train_steps": 1000, "beta_start": 1e-4, "beta_end": 0.02}


def test_sample_prediction_trains_and_is_what_the_model_folder_samples_with(tmp_path, manifest):
    from fluxbench.models.fluxmusic.pipeline import FluxMusicModel

    out = train(tiny_config(manifest, tmp_path / "x", prediction="sample", time_location=1.0, steps=30,
                            global_batch=4, micro_batch=4, save_every=30), progress=False)
    losses = [r["loss"] for r in read_losses(out)]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    _, spec = load_model_folder(out)
    assert spec["objective_options"] == {"time_sampling": "logit_normal", "time_location": 1.0,
                                         "prediction": "sample"}
    model = FluxMusicModel.from_folder(out, device="cpu")
    assert model.objective.prediction == "sample"
    assert model.generate(["a slow piano melody"], duration=CLIP_SECONDS, seed=0, steps=2).waveforms.shape[-1] > 0
    for bad, message in (({"prediction": "noise"}, "prediction 'noise'"),
                         ({"prediction": "sample", "objective": "ddpm"}, "needs objective rectified_flow")):
        with pytest.raises(TrainingError, match=message):
            train(tiny_config(manifest, tmp_path / "bad", **bad), progress=False)


def test_bf16_autocast_path_trains(tmp_path, manifest):
    out = train(tiny_config(manifest, tmp_path / "bf16", precision="bf16", steps=2, save_every=2), progress=False)
    losses = [r["loss"] for r in read_losses(out)]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)
    blob = torch.load(out / "checkpoints" / "step_0000002.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in blob["model"].values())  # master weights stay float32


def test_a_different_run_in_the_same_folder_is_refused(tmp_path, manifest):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train.json").write_text(json.dumps({**tiny_config(manifest, out).__dict__, "lr": 0.5}))
    with pytest.raises(TrainingError, match=r"different settings \(lr\)"):
        train(tiny_config(manifest, out), progress=False)


def test_bad_batch_split_is_refused(tmp_path, manifest):
    with pytest.raises(TrainingError, match="not a multiple of micro batch"):
        train(tiny_config(manifest, tmp_path / "run", global_batch=5, micro_batch=2), progress=False)


def test_init_from_an_official_checkpoint(tmp_path, manifest):
    first = train(tiny_config(manifest, tmp_path / "a", steps=1, save_every=1), progress=False)
    ckpt = first / "checkpoints" / "step_0000001.pt"
    second = train(tiny_config(manifest, tmp_path / "b", steps=1, lr=0.0, init=str(ckpt)), progress=False)
    # lr 0: the weights stay what --init loaded (the first run's EMA weights).
    started = torch.load(second / "checkpoints" / "step_0000001.pt", weights_only=True)["model"]
    for key, value in load_state_dict(ckpt, "ema").items():
        assert torch.equal(value, started[key])


# ---- pieces ---------------------------------------------------------------------------------------------
def test_sample_stream_visits_every_clip_once_per_epoch():
    stream = SampleStream(size=10, seed=4)
    positions = stream.indices(0, 30)  # three epochs, read across batch boundaries below
    for epoch in range(3):
        assert sorted(positions[epoch * 10:(epoch + 1) * 10]) == list(range(10))
    assert positions[:10] != positions[10:20]  # reshuffled each epoch
    assert stream.indices(7, 6) == positions[7:13]
    assert SampleStream(size=10, seed=4).indices(23, 4) == positions[23:27]  # a function of the position only


def test_ema_decay_and_interval():
    module = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(0.0)
    ema = EMA({"m": module}, decay=0.9, every=2)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema.maybe_update(1)  # not a multiple of 2: untouched
    assert torch.equal(ema.shadow["m"]["weight"], torch.zeros(1, 2))
    ema.maybe_update(2)
    torch.testing.assert_close(ema.shadow["m"]["weight"], torch.full((1, 2), 0.1))
    ema.maybe_update(4)
    torch.testing.assert_close(ema.shadow["m"]["weight"], torch.full((1, 2), 0.19))


class _SpyObjective:
    def training_loss(self, model, x0, cond, generator=None):
        self.cond = cond
        return x0.sum() * 0


@pytest.mark.parametrize("null_prob", [0.0, 0.5, 1.0])
def test_null_dropout_replaces_each_encoder_independently(null_prob):
    batch, tokens = 4000, 3
    null = TextConditioning(torch.full((1, tokens, 4), -1.0), torch.full((1, 2), -1.0))
    spy = _SpyObjective()
    step = TrainingStep(torch.nn.Identity(), spy, null, null_prob)
    step(torch.zeros(batch, 1, 2, 2), None, torch.ones(batch, tokens, 4), torch.ones(batch, 2),
         torch.Generator().manual_seed(0))
    txt_dropped = (spy.cond["txt"] == -1).all(dim=(1, 2))
    y_dropped = (spy.cond["y"] == -1).all(dim=1)
    assert ((spy.cond["txt"] == -1) | (spy.cond["txt"] == 1)).all()
    assert abs(txt_dropped.float().mean() - null_prob) < 0.03
    assert abs(y_dropped.float().mean() - null_prob) < 0.03
    # Independent: both dropped about p^2 of the time (not p, as with one shared draw).
    assert abs((txt_dropped & y_dropped).float().mean() - null_prob**2) < 0.03


# ---- DDP --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_process_ddp_matches_one_process_accumulating(tmp_path, manifest):
    """2 gloo processes x micro 2 = 1 process x 2 micro-batches of 2: same data, noise, averaged gradient."""
    single = train(tiny_config(manifest, tmp_path / "single", steps=3, save_every=3), progress=False)
    config_file = tmp_path / "ddp.json"
    config_file.write_text(json.dumps(tiny_config(manifest, tmp_path / "ddp", steps=3, save_every=3).__dict__))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "fluxbench.cli", "train", "-q", "--device", "cpu", "--config", str(config_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected, got = read_losses(single), read_losses(tmp_path / "ddp")
    assert [r["step"] for r in got] == [1, 2, 3]
    for a, b in zip(expected, got):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
    a = load_model_folder(single)[0].state_dict()
    b = load_model_folder(tmp_path / "ddp")[0].state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


# ---- the paper's components: frozen T5 + CLAP (embeddings cached), AudioLDM 2 VAE -------------------------
@pytest.mark.slow
def test_frozen_hub_text_encoders_are_cached_and_not_trained(tmp_path, manifest, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_hub

    root = tmp_path / "hub"
    tiny_hub.build_t5(root)
    tiny_hub.build_clap(root)
    tiny_hub.build_audioldm2(root)
    config = tiny_config(manifest, tmp_path / "run", conditioner={"kind": "t5-clap", "max_tokens": 16,
                                                                   "clap_max_tokens": 16},
                         codec={"kind": "audioldm2"}, normalize=True, steps=2, save_every=1,
                         weights_dir=str(root))
    out = train(config, progress=False)
    (cache,) = (out / "cache").iterdir()
    from safetensors import safe_open

    with safe_open(str(cache / "shard-00000.safetensors"), framework="pt") as shard:
        keys = set(shard.keys())
        assert {"latents", "txt.0", "y.0", "txt.11"} <= keys
        assert shard.get_tensor("txt.0").shape == (3, 16, 48)  # three captions of clip 0, T5 width 48
        assert shard.get_tensor("y.0").shape == (3, 32)
        # The cached embeddings are the encoder's own (batched encoding split back per clip, in bfloat16).
        from fluxbench.models.fluxmusic.conditioner import build_conditioner

        encoder = build_conditioner(config.conditioner, None, weights_dir=str(root))
        records = read_manifest(manifest)
        expected = encoder.encode(list(records[11].captions))
        torch.testing.assert_close(shard.get_tensor("txt.11").float(), expected.txt, atol=0.02, rtol=0.01)
        torch.testing.assert_close(shard.get_tensor("y.11").float(), expected.y, atol=0.02, rtol=0.01)
    blob = torch.load(out / "checkpoints" / "step_0000002.pt", weights_only=True)
    assert "conditioner" not in blob  # frozen encoders are not part of the training state
    _, spec = load_model_folder(out)
    assert spec["conditioner"]["kind"] == "t5-clap" and spec["codec"]["kind"] == "audioldm2"
    assert not (out / "conditioner.safetensors").exists()
    assert [int(r["step"]) for r in read_losses(out)] == [1, 2]


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from fluxbench.models.fluxmusic.train import TrainConfig, lr_factor

    config = TrainConfig(manifest="m", out="o", steps=110, warmup_steps=10, lr_schedule="cosine")
    assert [lr_factor(s, config) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, config) == pytest.approx(1.0)
    assert lr_factor(60, config) == pytest.approx(0.5)
    assert lr_factor(110, config) == pytest.approx(0.0, abs=1e-12)
    constant = TrainConfig(manifest="m", out="o", steps=110, warmup_steps=10)
    assert lr_factor(60, constant) == 1.0
    with pytest.raises(FluxbenchError, match="lr_schedule 'linear'"):
        TrainConfig(manifest="m", out="o", lr_schedule="linear").check()


def test_training_reports_step_loss_rate_and_time_left_off_a_terminal(tmp_path, manifest, caplog):
    import re

    with caplog.at_level("INFO", logger="fluxbench.train"):
        train(tiny_config(manifest, tmp_path / "run", steps=4, save_every=4), progress=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training step")]
    assert [int(re.match(r"training step (\d+)/4 ", line).group(1)) for line in lines] == [1, 2, 3, 4]
    assert all(re.search(r"loss \d+\.\d{4}  \d+\.\d\d steps/s  \d+m\d\ds left$", line) for line in lines)
    assert lines[-1].endswith("0m00s left")


def test_train_command_off_a_terminal_writes_step_lines_not_a_bar(tmp_path, manifest, capsys, caplog):
    from fluxbench import cli

    config = tmp_path / "config.json"
    values = {"manifest": str(manifest), "out": str(tmp_path / "run"), "size": "tiny", "duration": CLIP_SECONDS,
              "conditioner": {"kind": "vocab", "context_dim": 48, "vector_dim": 32, "max_tokens": 24},
              "codec": {"kind": "mel", "time_fold": 4, "freq_fold": 8}, "normalize": False, "steps": 2,
              "global_batch": 2, "micro_batch": 2, "save_every": 2}
    config.write_text(json.dumps(values))
    with caplog.at_level("INFO", logger="fluxbench.train"):
        assert cli.main(["train", "--config", str(config)]) == 0  # pytest's stderr is not a terminal
    assert [r.getMessage().split()[2] for r in caplog.records if r.getMessage().startswith("training step")] == [
        "1/2", "2/2"]
    assert "step/s" not in capsys.readouterr().err  # no tqdm bar
