"""Listening-test analysis: mean OVL/REL per system and rater group with 95% bootstrap CIs, attention-check
screening, Krippendorff's alpha, and the paper's Table-4 layout (systems x {beginner, expert} x {OVL, REL}),
rendered by `fluxbench.reports.listening`.

Confidence intervals resample raters and prompts independently with replacement (a two-way bootstrap), so they
reflect both who rated and what was rated; every system of a group sees the same resamples, which keeps
between-system comparisons paired. The interval is the percentile interval of the resampled means.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fluxbench.human_eval.study import ASPECTS, GROUPS, SCHEMA_VERSION, Key, Study, StudyError
from fluxbench.reports import listening
from fluxbench.reports.listening import MIN_RATINGS_FOR_INTERVAL  # a mean of fewer ratings gets no interval

POOLED = "all"
RESULTS_SCHEMA = "fluxbench.human_eval"
RESULTS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Observation:
    token: str
    group: str
    system: str
    prompt_id: str
    ovl: int
    rel: int


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float | None  # None: too few ratings or raters for an interval
    high: float | None
    n_ratings: int
    n_raters: int
    n_prompts: int


def interval_is_meaningful(n_ratings: int, n_raters: int, n_prompts: int) -> bool:
    return n_ratings >= MIN_RATINGS_FOR_INTERVAL and n_raters >= 2 and n_prompts >= 2


@dataclass(frozen=True)
class RaterScreen:
    token: str
    group: str
    rated: int
    assigned: int
    checks_seen: int
    checks_failed: int
    excluded: bool


# -- statistics -------------------------------------------------------------------------------------------------

def bootstrap_weights(n_raters: int, n_prompts: int, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicities of raters [B, n_raters] and prompts [B, n_prompts] in each two-way bootstrap resample."""
    rng = np.random.default_rng(seed)
    raters = rng.multinomial(n_raters, np.full(n_raters, 1 / n_raters), size=resamples).astype(np.float64)
    prompts = rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), size=resamples).astype(np.float64)
    return raters, prompts


def bootstrap_mean(values: np.ndarray, rater_index: np.ndarray, prompt_index: np.ndarray,
                   weights: tuple[np.ndarray, np.ndarray], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` and its percentile interval over rater x prompt resamples.

    A rating enters a resample as often as its rater times its prompt were drawn; resamples that happen to
    draw none of these ratings (possible in incomplete designs) are left out.
    """
    values = np.asarray(values, dtype=np.float64)
    rater_weights, prompt_weights = weights
    w = rater_weights[:, rater_index] * prompt_weights[:, prompt_index]
    totals = w.sum(axis=1)
    usable = totals > 0
    means = (w[usable] @ values) / totals[usable]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def krippendorff_alpha(reliability: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's alpha of a [coders, units] matrix (NaN = missing) at the nominal, ordinal, interval or
    ratio level, from the coincidence matrix of the pairable values (units with at least two values)."""
    data = np.asarray(reliability, dtype=np.float64)
    values = np.unique(data[~np.isnan(data)])
    index = {v: i for i, v in enumerate(values)}
    coincidence = np.zeros((len(values), len(values)))
    for unit in data.T:
        present = unit[~np.isnan(unit)]
        if len(present) < 2:
            continue
        counts = np.zeros(len(values))
        for v in present:
            counts[index[v]] += 1
        # Every ordered pair of values from different coders, weighted 1 / (m_u - 1).
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(present) - 1)
    marginals = coincidence.sum(axis=1)
    n = marginals.sum()
    if n == 0:
        return float("nan")
    delta = _difference(values, marginals, level)
    expected = (np.outer(marginals, marginals) * delta).sum()
    if expected == 0:
        return float("nan")  # a single value everywhere: agreement is undefined
    return float(1 - (n - 1) * (coincidence * delta).sum() / expected)


def _difference(values: np.ndarray, marginals: np.ndarray, level: str) -> np.ndarray:
    c, k = np.meshgrid(values, values, indexing="ij")
    if level == "nominal":
        return (c != k).astype(np.float64)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        total = c + k
        return np.divide((c - k) ** 2, total ** 2, out=np.zeros_like(total), where=total != 0)
    if level == "ordinal":
        cumulative = np.cumsum(marginals)
        i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
        low, high = np.minimum(i, j), np.maximum(i, j)
        between = cumulative[high] - cumulative[low] + marginals[low]  # sum of n_g for g from low to high
        return (between - (marginals[i] + marginals[j]) / 2) ** 2
    raise ValueError(f"unknown level {level!r}; expected nominal, ordinal, interval or ratio")


# -- the table --------------------------------------------------------------------------------------------------

@dataclass
class RatingTable:
    """The paper's Table-4 layout as plain data: one row per system, OVL and REL columns per rater group.
    Rendered by `fluxbench.reports.listening`, which also reads the CSV back as Table-4 rows."""

    title: str
    systems: list[str]
    groups: list[str]
    cells: dict[tuple[str, str, str], Estimate]  # (system, group, aspect)
    notes: list[str] = field(default_factory=list)

    def header(self) -> list[str]:
        return listening.estimates_header(self)

    def rows(self, with_ci: bool = True) -> list[list[str]]:
        return listening.estimates_rows(self, with_ci)

    def to_markdown(self, with_ci: bool = True) -> str:
        return listening.estimates_markdown(self, with_ci)

    def to_csv(self) -> str:
        return listening.estimates_csv(self)


# -- from a study to results ------------------------------------------------------------------------------------

@dataclass
class Results:
    table: RatingTable
    estimates: dict[tuple[str, str, str], Estimate]  # includes the pooled group "all"
    agreement: dict[str, dict]  # group -> {"clips_rated_twice": n, aspect: {level: alpha}}
    raters: list[RaterScreen]
    settings: dict

    def to_json(self) -> dict:
        return {
            "schema": RESULTS_SCHEMA,
            "schema_version": RESULTS_SCHEMA_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "settings": self.settings,
            "estimates": [{"system": s, "group": g, "aspect": a.upper(), **asdict(e)}
                          for (s, g, a), e in self.estimates.items()],
            # JSON has no NaN: undefined agreement (no variation at all) is written as null.
            "agreement": {g: {a: levels if not isinstance(levels, dict) else
                              {lvl: (None if np.isnan(v) else v) for lvl, v in levels.items()}
                              for a, levels in aspects.items()} for g, aspects in self.agreement.items()},
            "raters": [asdict(r) for r in self.raters],
        }


def screen_raters(study: Study, key: Key, ratings: dict[str, dict[str, tuple[int, int]]],
                  groups: dict[str, str], max_failed_checks: int) -> list[RaterScreen]:
    screens = []
    for token, own in ratings.items():
        plan = study.raters[token]
        checks = [c for c in plan.order if key.entries[c].attention_check and c in own]
        failed = sum(own[c][0] > key.attention_max_ovl for c in checks)
        screens.append(RaterScreen(token, groups[token], len(own), len(plan.order), len(checks), failed,
                                   failed > max_failed_checks))
    return screens


def analyse(study: Study, key: Key, rater_groups: dict[str, str],
            ratings: dict[str, dict[str, tuple[int, int]]], *, resamples: int = 2000, seed: int = 0,
            max_failed_checks: int = 0, level: float = 0.95) -> Results:
    """`ratings`: token -> clip id -> (OVL, REL); `rater_groups`: token -> group as registered."""
    if isinstance(max_failed_checks, bool) or not isinstance(max_failed_checks, int) or max_failed_checks < 0:
        raise StudyError(f"--max-failed-checks {max_failed_checks!r}: expected an integer >= 0")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 2:
        raise StudyError(f"--resamples {resamples!r}: expected an integer >= 2")
    ratings = {t: r for t, r in ratings.items() if t in study.raters and r}
    screens = screen_raters(study, key, ratings, rater_groups, max_failed_checks)
    kept = {s.token for s in screens if not s.excluded}
    observations = [
        Observation(token, rater_groups[token], key.entries[clip].system, key.entries[clip].prompt_id, ovl, rel)
        for token, own in sorted(ratings.items()) if token in kept
        for clip, (ovl, rel) in sorted(own.items())
        if clip in key.entries and not key.entries[clip].attention_check
    ]
    if not observations:
        raise StudyError("no usable ratings yet (none stored, or every rater failed the attention checks)")

    groups = [g for g in GROUPS if any(o.group == g for o in observations)]
    estimates: dict[tuple[str, str, str], Estimate] = {}
    agreement: dict[str, dict] = {}
    for group in groups + [POOLED]:
        subset = [o for o in observations if group == POOLED or o.group == group]
        tokens = sorted({o.token for o in subset})
        prompts = sorted({o.prompt_id for o in subset})
        rater_at = {t: i for i, t in enumerate(tokens)}
        prompt_at = {p: i for i, p in enumerate(prompts)}
        weights = bootstrap_weights(len(tokens), len(prompts), resamples, seed)
        for system in key.systems:
            rows = [o for o in subset if o.system == system]
            if not rows:
                continue
            r_index = np.array([rater_at[o.token] for o in rows])
            p_index = np.array([prompt_at[o.prompt_id] for o in rows])
            for aspect in ASPECTS:
                values = np.array([getattr(o, aspect) for o in rows])
                mean, low, high = bootstrap_mean(values, r_index, p_index, weights, level)
                if not interval_is_meaningful(len(rows), len(set(r_index)), len(set(p_index))):
                    low = high = None
                estimates[system, group, aspect] = Estimate(mean, low, high, len(rows), len(set(r_index)),
                                                            len(set(p_index)))
        units = sorted({(o.system, o.prompt_id) for o in subset})
        unit_at = {u: i for i, u in enumerate(units)}
        rated_twice = sum(n >= 2 for n in Counter((o.system, o.prompt_id) for o in subset).values())
        agreement[group] = {"clips_rated_twice": rated_twice}
        for aspect in ASPECTS:
            matrix = np.full((len(tokens), len(units)), np.nan)
            for o in subset:
                matrix[rater_at[o.token], unit_at[o.system, o.prompt_id]] = getattr(o, aspect)
            agreement[group][aspect] = {lvl: krippendorff_alpha(matrix, lvl) for lvl in ("interval", "ordinal")}

    excluded = [s for s in screens if s.excluded]
    notes = [
        f"Mean opinion scores on the 1-5 scale with {level:.0%} two-way bootstrap intervals (raters and prompts "
        f"resampled, {resamples} resamples); n: ratings behind each mean; no interval below "
        f"{MIN_RATINGS_FOR_INTERVAL} ratings or from a single rater or prompt.",
        "Raters per group: " + ", ".join(
            f"{g} {len({o.token for o in observations if o.group == g})}" for g in groups) +
        f" ({sum(s.rated == s.assigned for s in screens if not s.excluded)} finished all their clips); "
        f"{len(excluded)} excluded for failing more than {max_failed_checks} attention check(s).",
        "Krippendorff's alpha (interval): " + "; ".join(_format_agreement(g, agreement[g]) for g in groups) + ".",
    ]
    table = RatingTable("Human evaluation (OVL: overall quality, REL: relevance to the caption)",
                        list(key.systems), list(GROUPS),
                        {k: v for k, v in estimates.items() if k[1] != POOLED}, notes)
    settings = {"resamples": resamples, "seed": seed, "level": level, "max_failed_checks": max_failed_checks,
                "study": str(study.root), "study_schema_version": SCHEMA_VERSION}
    return Results(table, estimates, agreement, screens, settings)


def _format_agreement(group: str, agreement: dict) -> str:
    if agreement["clips_rated_twice"] == 0:
        return f"{group} undefined (no clip rated by two raters)"
    alphas = []
    for aspect in ASPECTS:
        alpha = agreement[aspect]["interval"]
        alphas.append(f"{aspect.upper()} " + ("undefined (no variation)" if np.isnan(alpha) else f"{alpha:.2f}"))
    return f"{group} " + ", ".join(alphas) + f" over {agreement['clips_rated_twice']} clips rated twice or more"


def analyse_study(study_root: str | Path, database: str | None = None, **options) -> Results:
    from fluxbench.human_eval.storage import Responses, database_url

    study, key = Study.load(study_root), Key.load(study_root)
    responses = Responses(database_url(study_root, database))
    try:
        groups = {r.token: r.group for r in responses.all_raters()}
        ratings: dict[str, dict[str, tuple[int, int]]] = {}
        for rating in responses.all_ratings():
            ratings.setdefault(rating.token, {})[rating.clip_id] = (rating.ovl, rating.rel)
    finally:
        responses.close()
    return analyse(study, key, groups, ratings, **options)


def write_results(results: Results, out: str | Path) -> dict[str, Path]:
    """human_eval.json, table4.md and table4.csv, each written atomically."""
    from fluxbench.atomic import write_json, write_text

    out = Path(out)
    files = {
        "json": write_json(out / "human_eval.json", results.to_json(), sort_keys=True),
        "markdown": write_text(out / "table4.md", results.table.to_markdown()),
        "csv": write_text(out / "table4.csv", results.table.to_csv()),
    }
    return files
