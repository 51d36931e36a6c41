"""Listening tests without the app: designing a study (blinded, uniform audio; balanced, counterbalanced
assignment; attention checks; one-line errors)."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from fluxbench.audio import integrated_loudness, read_audio
from fluxbench.human_eval.plan import WARM_UP_CLIPS, assign_prompts, parse_raters, spread_order
from fluxbench.human_eval.study import Key, Study, StudyError
from test_human_eval_support import PROMPTS, make_study, make_system_folders, secrets_of

pytest.importorskip("sqlalchemy")


def test_study_audio_is_blinded_and_uniform(tmp_path):
    study = make_study(tmp_path, attention_checks=2)
    key = json.loads((study / "key.json").read_text())
    files = sorted((study / "audio").iterdir())
    assert len(files) == 3 * len(PROMPTS) + 2
    for path in files:
        assert re.fullmatch(r"[0-9a-f]{16}\.wav", path.name), path.name
        info = sf.info(str(path))
        # One format for all: the lowest input rate (16 kHz), mono, the shortest input (1 s), 16-bit.
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
        wave, rate = read_audio(path)
        assert integrated_loudness(wave[0], rate) == pytest.approx(-23.0, abs=0.15)
        assert b"LIST" not in path.read_bytes()[:64]  # no metadata chunk
    # The rater-facing description names no system, source folder or source file.
    public = (study / "study.json").read_text() + (study / "raters.csv").read_text()
    for secret in secrets_of(study):
        assert secret not in public
    assert "zqalphasys" in (study / "key.json").read_text()
    checks = [c for c in key["clips"] if c["attention_check"]]
    assert len(checks) == 2 and all(c["system"] is None for c in checks)


def test_attention_check_is_audibly_degraded(tmp_path):
    study = make_study(tmp_path, attention_checks=1)
    key = json.loads((study / "key.json").read_text())
    check = next(c for c in key["clips"] if c["attention_check"])
    wave, rate = read_audio(study / "audio" / f"{check['clip_id']}.wav")
    spectrum = np.abs(np.fft.rfft(wave[0]))
    tone = spectrum.max()
    # A pure tone concentrates its energy in a few bins; buried in -5 dB SNR noise, most energy is broadband.
    assert (spectrum ** 2).sum() > 2 * (spectrum[spectrum > tone / 10] ** 2).sum()


@pytest.mark.parametrize("raters, per_prompt", [({"beginner": 3, "expert": 4}, 2), ({None: 5}, None)])
def test_assignment_is_balanced_and_counterbalanced(tmp_path, raters, per_prompt):
    study_dir = make_study(tmp_path, raters=raters, ratings_per_prompt=per_prompt, attention_checks=1)
    study, key = Study.load(study_dir), Key.load(study_dir)
    systems = key.systems
    assert len(study.raters) == sum(raters.values())
    for group, count in raters.items():
        plans = [p for p in study.raters.values() if p.group == group]
        k = per_prompt or count
        raters_of_clip = Counter(c for p in plans for c in p.order if not key.entries[c].attention_check)
        stimuli = [c for c, e in key.entries.items() if not e.attention_check]
        assert {raters_of_clip[c] for c in stimuli} == {k}  # every clip exactly K distinct raters of the group
        loads = []
        for plan in plans:
            entries = [key.entries[c] for c in plan.order]
            assert len(set(plan.order)) == len(plan.order)
            stimuli_of_rater = [e for e in entries if not e.attention_check]
            per_system = Counter(e.system for e in stimuli_of_rater)
            # Counterbalanced: every system equally often, on the same prompts.
            assert set(per_system) == set(systems) and len(set(per_system.values())) == 1
            prompts = {s: {e.prompt_id for e in stimuli_of_rater if e.system == s} for s in systems}
            assert all(p == prompts[systems[0]] for p in prompts.values())
            checks = [i for i, e in enumerate(entries) if e.attention_check]
            assert len(checks) == 1 and checks[0] >= WARM_UP_CLIPS
            loads.append(per_system[systems[0]])
        assert max(loads) - min(loads) <= 1
    orders = [tuple(c for c in p.order) for p in study.raters.values()]
    assert len(set(orders)) > 1  # randomised per rater


def test_design_options_subset_format_and_own_attention_clip(tmp_path):
    bad = tmp_path / "bad.wav"
    sf.write(str(bad), np.random.default_rng(0).uniform(-0.9, 0.9, 48000), 48000)
    study = make_study(tmp_path, raters={None: 2}, attention_checks=1, prompts=2, duration=0.75, sample_rate=8000,
                       attention_clips=[bad], loudness_lufs=None)
    key = json.loads((study / "key.json").read_text())
    assert len({c["prompt_id"] for c in key["clips"] if not c["attention_check"]}) == 2
    check = next(c for c in key["clips"] if c["attention_check"])
    assert check["source"] == str(bad)
    for clip in key["clips"]:
        info = sf.info(str(study / "audio" / f"{clip['clip_id']}.wav"))
        assert (info.samplerate, info.frames) == (8000, 6000)
        assert clip["gain_db"] == 0.0  # levels kept
    # The quiet system stays quiet when loudness normalisation is off: its peak is its own 0.02.
    quiet = next(c for c in key["clips"] if c["system"] == "zqbetasys")
    wave, _ = read_audio(study / "audio" / f"{quiet['clip_id']}.wav")
    assert np.abs(wave).max() == pytest.approx(0.02, abs=2e-3)
    # A short attention clip of your own is padded to the stimuli's length instead of shortening them.
    sf.write(str(bad), np.random.default_rng(1).uniform(-0.9, 0.9, 28800), 48000)
    other = make_study(tmp_path / "second", raters={None: 1}, attention_checks=1, attention_clips=[bad])
    assert {sf.info(str(path)).frames for path in (other / "audio").iterdir()} == {16000}


def test_assign_prompts_many_prompts():
    rng = np.random.default_rng(3)
    prompts = [f"p{i}" for i in range(53)]
    tokens = [f"t{i}" for i in range(7)]
    assigned = assign_prompts(prompts, tokens, 3, rng)
    counts = Counter(p for ps in assigned.values() for p in ps)
    assert set(counts) == set(prompts) and set(counts.values()) == {3}
    assert all(len(set(ps)) == len(ps) for ps in assigned.values())  # distinct raters per prompt
    loads = [len(ps) for ps in assigned.values()]
    assert max(loads) - min(loads) <= 1 and sum(loads) == 53 * 3
    with pytest.raises(StudyError, match="between 1 and"):
        assign_prompts(prompts, tokens, 8, rng)


def test_spread_order_keeps_a_prompts_clips_apart():
    rng = np.random.default_rng(0)
    items = [(f"p{p}", f"p{p}s{s}") for p in range(6) for s in range(3)]
    for _ in range(20):
        order = spread_order(items, rng)
        assert sorted(order) == sorted(items)
        assert all(a[0] != b[0] for a, b in zip(order, order[1:]))


def test_design_errors_are_one_line(tmp_path):
    from fluxbench.human_eval.design import DesignOptions, create_study

    folders = make_system_folders(tmp_path / "in")
    with pytest.raises(StudyError, match="--raters"):
        parse_raters("novice=3")
    with pytest.raises(StudyError, match="names the system 'zqbetasys'"):
        create_study(tmp_path / "s0", folders, DesignOptions(raters={None: 1}, title="ZQbetasys vs. the rest"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(StudyError, match="already exists"):
        create_study(tmp_path / "taken", folders, DesignOptions(raters={None: 1}))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    sf.write(str(lonely / "other.wav"), np.zeros(16000), 16000)
    with pytest.raises(StudyError, match="share no prompt"):
        create_study(tmp_path / "s1", {**folders, "lonely": lonely}, DesignOptions(raters={None: 1}))
    (folders["zqalphasys"] / "captions.jsonl").unlink()
    with pytest.raises(StudyError, match="no caption for 4 prompt"):
        create_study(tmp_path / "s2", folders, DesignOptions(raters={None: 1}))
    assert not (tmp_path / "s2").exists() and not list(tmp_path.glob(".s2*"))  # nothing half-written
