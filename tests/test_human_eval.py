"""Listening tests without the app: study design, storage, analysis and the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fluxbench.audio import integrated_loudness, read_audio
from fluxbench.cli import main as cli
from fluxbench.human_eval.analysis import (
    analyse, bootstrap_mean, bootstrap_weights, krippendorff_alpha, write_results,
)
from fluxbench.human_eval.plan import WARM_UP_CLIPS, assign_prompts, parse_raters, spread_order
from fluxbench.human_eval.storage import Responses, StorageError
from fluxbench.human_eval.study import Clip, Key, KeyEntry, RaterPlan, Study, StudyError
from test_human_eval_support import PROMPTS, make_study, make_system_folders, secrets_of

pytest.importorskip("sqlalchemy")


# -- design -----------------------------------------------------------------------------------------------------

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


# -- storage ----------------------------------------------------------------------------------------------------

# A server database is exercised when one is provided, e.g.
# FLUXBENCH_TEST_POSTGRES_URL=postgresql+psycopg://postgres@/postgres?host=/tmp&port=55432 (tables are dropped).
POSTGRES_ENV = "FLUXBENCH_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'r.sqlite'}"
        return
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"set {POSTGRES_ENV} to test against a PostgreSQL server")
    responses = Responses(url)
    responses.metadata.drop_all(responses.engine)
    responses.close()
    yield url
    responses = Responses(url)
    responses.metadata.drop_all(responses.engine)
    responses.close()


def test_storage_upsert_and_validation(database):
    responses = Responses(database)
    assert responses.register_rater("tok", "expert", {"training": "None"})
    assert not responses.register_rater("tok", "beginner", {})  # the first registration stands
    assert responses.rater("tok").group == "expert"
    responses.save_rating("tok", "clip", 2, 3)
    responses.save_rating("tok", "clip", 4, 5)
    (rating,) = responses.all_ratings()
    assert (rating.ovl, rating.rel, rating.revisions) == (4, 5, 2)
    for bad in (0, 6, True, 2.5):
        with pytest.raises(StorageError, match="off the 1-5 scale"):
            responses.save_rating("tok", "clip", bad, 3)
    with pytest.raises(StorageError, match="not registered"):
        responses.save_rating("stranger", "clip", 3, 3)
    responses.close()


def test_sqlite_wal_and_url_errors(tmp_path):
    responses = Responses(f"sqlite:///{tmp_path / 'r.sqlite'}")
    with responses.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with pytest.raises(StorageError, match="not an SQLAlchemy URL"):
        Responses("no-such-scheme")
    with pytest.raises(StorageError, match="does not exist"):
        Responses(f"sqlite:///{tmp_path / 'missing' / 'r.sqlite'}")


@pytest.mark.slow
def test_concurrent_raters_lose_and_duplicate_nothing(database):
    """50 rater threads x 100 ratings, each also revising every tenth rating, against one database."""
    responses = Responses(database)
    errors: list[str] = []
    start = threading.Barrier(50)

    def rater(number: int) -> None:
        try:
            token = f"rater{number}"
            responses.register_rater(token, "expert" if number % 2 else "beginner", {"n": number})
            start.wait()
            for clip in range(100):
                responses.save_rating(token, f"clip{clip}", 1 + (number + clip) % 5, 1 + (number * clip) % 5)
            for clip in range(0, 100, 10):
                responses.save_rating(token, f"clip{clip}", 1 + (number + clip + 1) % 5, 1 + (number * clip) % 5)
        except Exception as error:  # collected and asserted below
            errors.append(repr(error))

    threads = [threading.Thread(target=rater, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A fresh connection sees every write exactly once, with the last value.
    responses.close()
    reader = Responses(database)
    rows = reader.all_ratings()
    reader.close()
    assert len(rows) == 5000
    assert len({(r.token, r.clip_id) for r in rows}) == 5000
    for row in rows:
        number, clip = int(row.token[5:]), int(row.clip_id[4:])
        revised = clip % 10 == 0
        assert row.ovl == 1 + (number + clip + revised) % 5
        assert row.rel == 1 + (number * clip) % 5
        assert row.revisions == (2 if revised else 1)


# -- analysis: hand-computable cases --------------------------------------------------------------------------

def tiny_study(ratings: dict[str, dict[tuple[str, str], tuple[int, int]]], groups: dict[str, str],
               checks: dict[str, int] | None = None):
    """A study built in memory: ratings[token][(system, prompt)] = (OVL, REL); checks[token] = OVL on a check."""
    entries, clips = {}, {}
    for token, own in ratings.items():
        for system, prompt in own:
            clip_id = f"{system}-{prompt}"
            entries[clip_id] = KeyEntry(clip_id, system, prompt, False, "")
            clips[clip_id] = Clip(clip_id, "caption", "")
    entries["check"] = KeyEntry("check", None, "p1", True, "")
    clips["check"] = Clip("check", "caption", "")
    systems = tuple(sorted({e.system for e in entries.values() if e.system}))
    stored = {t: {f"{s}-{p}": v for (s, p), v in own.items()} for t, own in ratings.items()}
    for token, ovl in (checks or {}).items():
        stored[token]["check"] = (ovl, 1)
    raters = {t: RaterPlan(t, groups[t], tuple(stored[t]), "C") for t in ratings}
    return Study(Path("."), "t", clips, raters), Key(systems, entries, 2), stored


def test_means_and_ci_on_a_hand_computable_case():
    # Two experts, two prompts, two systems, fully crossed.
    ratings = {
        "e1": {("A", "p1"): (4, 2), ("A", "p2"): (5, 3), ("B", "p1"): (2, 5), ("B", "p2"): (1, 4)},
        "e2": {("A", "p1"): (3, 2), ("A", "p2"): (4, 2), ("B", "p1"): (2, 5), ("B", "p2"): (2, 5)},
        "b1": {("A", "p1"): (1, 1), ("B", "p1"): (5, 5)},
    }
    groups = {"e1": "expert", "e2": "expert", "b1": "beginner"}
    study, key, stored = tiny_study(ratings, groups)
    results = analyse(study, key, groups, stored, resamples=500, seed=1)
    expert_a_ovl = results.estimates["A", "expert", "ovl"]
    assert expert_a_ovl.mean == pytest.approx((4 + 5 + 3 + 4) / 4)
    assert results.estimates["A", "expert", "rel"].mean == pytest.approx((2 + 3 + 2 + 2) / 4)
    assert results.estimates["B", "expert", "ovl"].mean == pytest.approx((2 + 1 + 2 + 2) / 4)
    assert (expert_a_ovl.n_ratings, expert_a_ovl.n_raters, expert_a_ovl.n_prompts) == (4, 2, 2)
    # Resampled means of A's expert OVL can only lie between the smallest and largest rating.
    assert 3 <= expert_a_ovl.low <= expert_a_ovl.mean <= expert_a_ovl.high <= 5
    beginner = results.estimates["B", "beginner", "ovl"]
    # One rating: its mean with n, and no (zero-width) interval.
    assert (beginner.mean, beginner.low, beginner.high, beginner.n_ratings) == (5, None, None, 1)
    row = next(r for r in results.table.rows() if r[0] == "B")
    assert row[1] == "5.00 (n=1)" and re.fullmatch(r"1\.75 \[\d\.\d\d, \d\.\d\d\] \(n=4\)", row[3])
    assert results.estimates["A", "all", "ovl"].mean == pytest.approx((4 + 5 + 3 + 4 + 1) / 5)
    # Table 4 layout: systems as rows, OVL and REL per rater group (beginner first).
    table = results.table
    assert table.header() == ["System", "Beginner OVL", "Beginner REL", "Expert OVL", "Expert REL"]
    assert table.rows(with_ci=False) == [["A", "1.00 (n=1)", "1.00 (n=1)", "4.00 (n=4)", "2.25 (n=4)"],
                                         ["B", "5.00 (n=1)", "5.00 (n=1)", "1.75 (n=4)", "4.75 (n=4)"]]
    markdown = table.to_markdown()
    assert "| A | 1.00 (n=1) | 1.00 (n=1) | 4.00 [" in markdown
    long = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert len(long) == 8
    row = next(r for r in long if (r["system"], r["group"], r["aspect"]) == ("B", "expert", "REL"))
    assert float(row["mean"]) == 4.75 and int(row["n_ratings"]) == 4


def test_bootstrap_interval_matches_enumeration():
    # Two raters rating one prompt 1 and 5: the resampled mean is 1, 3 or 5 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% percentiles are exactly 1 and 5.
    weights = bootstrap_weights(2, 1, 4000, seed=0)
    assert bootstrap_mean(np.array([1, 5]), np.array([0, 1]), np.array([0, 0]), weights) == (3.0, 1.0, 5.0)
    # Three raters 1, 2, 3: P(all draws = 1) = 1/27 = 3.7% > 2.5%, so the interval is [1, 3].
    weights = bootstrap_weights(3, 1, 4000, seed=0)
    assert bootstrap_mean(np.array([1, 2, 3]), np.arange(3), np.zeros(3, int), weights) == (2.0, 1.0, 3.0)


def test_bootstrap_interval_matches_normal_theory_for_many_prompts():
    rng = np.random.default_rng(5)
    values = rng.integers(1, 6, size=400).astype(float)
    weights = bootstrap_weights(1, 400, 4000, seed=2)
    mean, low, high = bootstrap_mean(values, np.zeros(400, int), np.arange(400), weights)
    half = 1.96 * values.std(ddof=1) / np.sqrt(400)
    assert mean == pytest.approx(values.mean())
    assert low == pytest.approx(mean - half, abs=0.1 * half)
    assert high == pytest.approx(mean + half, abs=0.1 * half)


def test_attention_check_failures_exclude_raters():
    ratings = {"e1": {("A", "p1"): (5, 5)}, "e2": {("A", "p1"): (1, 1)}}
    groups = {"e1": "expert", "e2": "expert"}
    study, key, stored = tiny_study(ratings, groups, checks={"e1": 2, "e2": 4})  # e2 rates a bad clip 4: fails
    strict = analyse(study, key, groups, stored, resamples=200)
    assert strict.estimates["A", "expert", "ovl"].mean == 5
    screens = {s.token: s for s in strict.raters}
    assert (screens["e2"].checks_failed, screens["e2"].excluded) == (1, True)
    assert (screens["e1"].checks_failed, screens["e1"].excluded) == (0, False)
    assert "1 excluded" in strict.table.to_markdown()
    lenient = analyse(study, key, groups, stored, resamples=200, max_failed_checks=1)
    assert lenient.estimates["A", "expert", "ovl"].mean == 3  # attention checks never enter the means


def test_table_keeps_both_groups_and_explains_missing_agreement():
    ratings = {"e1": {("A", "p1"): (4, 4)}, "e2": {("A", "p2"): (2, 2)}}
    groups = {"e1": "expert", "e2": "expert"}
    study, key, stored = tiny_study(ratings, groups)
    results = analyse(study, key, groups, stored, resamples=200)
    assert results.table.rows(with_ci=False) == [["A", "-", "-", "3.00 (n=2)", "3.00 (n=2)"]]
    # one rating per prompt from different raters: each rater and prompt seen once, too few for an interval
    assert results.estimates["A", "expert", "ovl"].low is None
    assert results.agreement["expert"]["clips_rated_twice"] == 0
    assert "expert undefined (no clip rated by two raters)" in results.table.to_markdown()


def test_krippendorff_alpha_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, missing data.
    n = np.nan
    data = np.array([
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ])
    published = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}
    for level, value in published.items():
        assert krippendorff_alpha(data, level) == pytest.approx(value, abs=5e-4), level


def test_krippendorff_alpha_small_cases():
    assert krippendorff_alpha(np.array([[1, 2, 3, 4], [1, 2, 3, 4]])) == 1.0
    # Two coders, two units, values (1,2) and (2,1): hand computation gives alpha = -1/2 at the interval level:
    # o = [[0,2],[2,0]], n_1 = n_2 = 2, n = 4: 1 - 3 * (4 * 1) / (2*2*1 + 2*2*1) = -0.5.
    assert krippendorff_alpha(np.array([[1, 2], [2, 1]])) == pytest.approx(-0.5)
    assert np.isnan(krippendorff_alpha(np.array([[3, 3], [3, 3]])))


# -- the command line -------------------------------------------------------------------------------------------

def test_cli_create_and_results_end_to_end(tmp_path, capsys):
    folders = make_system_folders(tmp_path / "in")
    study = tmp_path / "study"
    args = ["human-eval", "create", str(study), "--raters", "beginner=2,expert=2", "--attention-checks", "1",
            "--ground-truth", str(tmp_path / "in" / "zqtruthfolder"), "--seed", "3"]
    for name, folder in folders.items():
        args += ["--system", f"{name}={folder}"]
    assert cli(args) == 0
    assert "3 systems x 4 prompts" in capsys.readouterr().out

    assert cli(["human-eval", "results", str(study)]) == 2  # nothing rated yet: a one-line error
    assert "no usable ratings" in capsys.readouterr().err

    # Every rater gives OVL = a per-system score and REL = 3 (experts) or 4 (beginners); the checks get 1.
    loaded, key = Study.load(study), Key.load(study)
    ovl_of = {"zqalphasys": 4, "zqbetasys": 2, "ground truth": 5}
    responses = Responses(f"sqlite:///{study / 'responses.sqlite'}")
    for plan in loaded.raters.values():
        responses.register_rater(plan.token, plan.group, {})
        for clip in plan.order:
            entry = key.entries[clip]
            rel = 3 if plan.group == "expert" else 4
            responses.save_rating(plan.token, clip, 1 if entry.attention_check else ovl_of[entry.system], rel)
    responses.close()
    assert cli(["human-eval", "results", str(study), "--resamples", "300"]) == 0
    printed = capsys.readouterr().out
    assert ("| zqalphasys | 4.00 [4.00, 4.00] (n=8) | 4.00 [4.00, 4.00] (n=8) | 4.00 [4.00, 4.00] (n=8) "
            "| 3.00 [3.00, 3.00] (n=8) |") in printed
    saved = json.loads((study / "results" / "human_eval.json").read_text())
    assert (saved["schema"], saved["schema_version"]) == ("fluxbench.human_eval", 1)
    cell = next(e for e in saved["estimates"]
                if (e["system"], e["group"], e["aspect"]) == ("ground truth", "beginner", "OVL"))
    assert (cell["mean"], cell["n_ratings"], cell["n_raters"]) == (5, 8, 2)
    assert (study / "results" / "table4.csv").read_text().startswith("system,group,aspect,mean")
    # OVL is constant within each system while systems differ: agreement on OVL is perfect.
    assert saved["agreement"]["expert"]["ovl"]["interval"] == pytest.approx(1.0)
    assert saved["agreement"]["expert"]["rel"]["interval"] is None  # REL constant: alpha undefined, not NaN


def test_cli_errors_and_light_imports(tmp_path, capsys):
    assert cli(["human-eval", "serve", str(tmp_path / "nope")]) == 2
    assert "study.json: not found" in capsys.readouterr().err
    assert cli(["human-eval", "create", str(tmp_path / "s"), "--system", "broken"]) == 2
    assert "expected NAME=FOLDER" in capsys.readouterr().err
    code = ("import sys, fluxbench.cli as c; c.build_parser('human-eval'); "
            "print(sorted(m for m in ('streamlit', 'sqlalchemy', 'pandas', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reports_wing_reads_the_results_files(tmp_path):
    """The exported files are the interface to `fluxbench report` (Table 4 in Markdown, LaTeX, CSV, HTML)."""
    listening = pytest.importorskip("fluxbench.reports.listening")
    ratings = {
        "e1": {("A", "p1"): (4, 2), ("A", "p2"): (5, 3), ("B", "p1"): (2, 5), ("B", "p2"): (1, 4)},
        "e2": {("A", "p1"): (5, 2), ("A", "p2"): (4, 3), ("B", "p1"): (2, 5), ("B", "p2"): (1, 4)},
        "b1": {("A", "p1"): (1, 1), ("B", "p1"): (5, 5)},
    }
    groups = {"e1": "expert", "e2": "expert", "b1": "beginner"}
    study, key, stored = tiny_study(ratings, groups)
    results = analyse(study, key, groups, stored, resamples=200)
    files = write_results(results, tmp_path)
    for kind in ("json", "csv"):
        rows = {(r.system, r.group): r for r in listening.load_listening(files[kind])}
        assert set(rows) == {("A", "expert"), ("B", "expert"), ("A", "beginner"), ("B", "beginner")}
        expert_a = results.estimates["A", "expert", "ovl"]
        assert rows["A", "expert"].ovl == pytest.approx(4.5)
        assert rows["A", "expert"].ovl_ci95 == pytest.approx((expert_a.low, expert_a.high), abs=1e-4)
        assert rows["B", "beginner"].rel == 5 and rows["A", "expert"].n == 4
        assert rows["B", "beginner"].ovl_ci95 is None and rows["B", "beginner"].n == 1  # one rating: no interval
