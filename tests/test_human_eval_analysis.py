"""Listening tests without the app: the analysis (means, bootstrap intervals, rater screening, agreement),
the command line and the files `fluxbench report` reads."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fluxbench.cli import main as cli
from fluxbench.human_eval.analysis import (
    analyse, bootstrap_mean, bootstrap_weights, krippendorff_alpha, write_results,
)
from fluxbench.human_eval.storage import Responses
from fluxbench.human_eval.study import Clip, Key, KeyEntry, RaterPlan, Study
from test_human_eval_support import make_system_folders

pytest.importorskip("sqlalchemy")


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
