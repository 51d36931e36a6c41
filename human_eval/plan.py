"""The assignment plan of a listening study, before any audio is touched: which prompts, which attention
checks, and which clips each rater hears in which order.

- The unit of assignment is a prompt: a rater who gets a prompt rates every system's clip for it, so each
  rater hears every system equally often and on the same captions (systems are counterbalanced within raters).
- Prompts are dealt to raters cyclically after a seeded shuffle, per rater group: each prompt gets exactly K
  distinct raters of each group and rater loads differ by at most one prompt.
- Each rater's order is random, with clips of the same prompt kept apart where possible; attention checks
  come at random places after the warm-up clips.
Every draw comes from the one seeded generator, in a fixed order, so a seed fixes the plan.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluxbench.human_eval.study import GROUPS, StudyError

WARM_UP_CLIPS = 2  # attention checks never come first

Stimulus = tuple[str, str]  # (prompt id, system)


@dataclass(frozen=True)
class AttentionCheck:
    prompt_id: str  # whose caption it is shown with
    clip_index: int | None  # which supplied attention clip, or None: a system's clip buried in noise
    system: str | None  # the buried clip's system
    noise: np.ndarray | None  # unit white noise, one value per sample of the study's clips


@dataclass(frozen=True)
class RaterAssignment:
    token: str
    group: str | None  # None: chosen by the rater at the first visit
    order: list[Stimulus | int]  # a system's clip for a prompt, or the index of an attention check
    completion_code: str


@dataclass(frozen=True)
class StudyPlan:
    checks: list[AttentionCheck]
    raters: list[RaterAssignment]


def parse_raters(spec: str) -> dict[str | None, int]:
    """'20' (groups chosen at first visit) or 'beginner=10,expert=10'."""
    spec = spec.strip()
    if spec.isdigit():
        count = int(spec)
        if count < 1:
            raise StudyError("--raters: need at least one rater")
        return {None: count}
    counts: dict[str | None, int] = {}
    for part in spec.split(","):
        group, _, count = part.partition("=")
        group = group.strip().lower()
        if group not in GROUPS or not count.strip().isdigit() or int(count) < 1:
            raise StudyError(f"--raters: bad part {part!r}; expected a count or GROUP=COUNT with GROUP in "
                             f"{', '.join(GROUPS)} (e.g. beginner=10,expert=10)")
        counts[group] = int(count)
    return counts


def select_prompts(prompt_ids: list[str], count: int | None, rng: np.random.Generator) -> list[str]:
    """A random subset of `count` prompts (all of them when None), sorted."""
    if count is None:
        return prompt_ids
    if not 1 <= count <= len(prompt_ids):
        raise StudyError(f"--prompts {count}: only {len(prompt_ids)} prompts are shared by all systems")
    return sorted(rng.choice(prompt_ids, size=count, replace=False).tolist())


def plan_study(prompt_ids: list[str], systems: list[str], raters: dict[str | None, int],
               ratings_per_prompt: int | None, attention_checks: int, attention_clips: int, samples: int,
               rng: np.random.Generator) -> StudyPlan:
    """Attention checks (a supplied clip, or a random system's clip to be buried in noise), then per rater group
    the prompts each rater gets and the order of their clips."""
    checks = []
    for index in range(attention_checks):
        prompt_id = prompt_ids[int(rng.integers(len(prompt_ids)))]
        if attention_clips:
            checks.append(AttentionCheck(prompt_id, index % attention_clips, None, None))
        else:
            system = systems[int(rng.integers(len(systems)))]
            checks.append(AttentionCheck(prompt_id, None, system, rng.standard_normal(samples)))
    assignments = []
    for group, count in raters.items():
        tokens = [secrets.token_urlsafe(12) for _ in range(count)]
        per_prompt = ratings_per_prompt or count
        for token, assigned in assign_prompts(prompt_ids, tokens, per_prompt, rng).items():
            pairs = [(p, (p, name)) for p in assigned for name in systems]
            order = insert_checks([stimulus for _, stimulus in spread_order(pairs, rng)], list(range(len(checks))),
                                  rng)
            assignments.append(RaterAssignment(token, group, order, secrets.token_hex(4).upper()))
    return StudyPlan(checks, assignments)


def assign_prompts(prompt_ids: list[str], tokens: list[str], per_prompt: int,
                   rng: np.random.Generator) -> dict[str, list[str]]:
    """Deal each prompt to `per_prompt` distinct raters; loads differ by at most one prompt."""
    if not 1 <= per_prompt <= len(tokens):
        raise StudyError(f"--ratings-per-item {per_prompt}: must be between 1 and the group's {len(tokens)} raters")
    prompts = [prompt_ids[i] for i in rng.permutation(len(prompt_ids))]
    raters = [tokens[i] for i in rng.permutation(len(tokens))]
    assigned: dict[str, list[str]] = {t: [] for t in tokens}
    # Consecutive slots of one prompt land on consecutive (hence distinct) raters of the cycle.
    for slot in range(len(prompts) * per_prompt):
        assigned[raters[slot % len(raters)]].append(prompts[slot // per_prompt])
    return assigned


def spread_order(items: list[tuple[str, Any]], rng: np.random.Generator) -> list[tuple[str, Any]]:
    """Random order of (prompt, clip) pairs in which a prompt's clips are never adjacent when avoidable."""
    remaining: dict[str, list[Any]] = {}
    for prompt, clip in items:
        remaining.setdefault(prompt, []).append(clip)
    for clips in remaining.values():
        rng.shuffle(clips)
    order: list[tuple[str, Any]] = []
    last = None
    while remaining:
        # Taking prompt p next leaves R - 1 clips that can still be spread iff no prompt then holds more than
        # half of them (rounded up) and p itself, which may not come right after, holds at most half (rounded down).
        left = sum(map(len, remaining.values())) - 1
        counts = sorted((len(c) for c in remaining.values()), reverse=True) + [0]

        def feasible(prompt: str) -> bool:
            own = len(remaining[prompt])
            others = counts[1] if own == counts[0] else counts[0]
            return max(own - 1, others) <= (left + 1) // 2 and own - 1 <= left // 2

        choices = [p for p in remaining if p != last and feasible(p)]
        choices = choices or list(remaining)  # unavoidable neighbours (e.g. a single prompt)
        weights = np.array([len(remaining[p]) for p in choices], dtype=float)
        prompt = choices[rng.choice(len(choices), p=weights / weights.sum())]
        order.append((prompt, remaining[prompt].pop()))
        if not remaining[prompt]:
            del remaining[prompt]
        last = prompt
    return order


def insert_checks(order: list[Any], checks: list[Any], rng: np.random.Generator) -> list[Any]:
    """Put attention checks at random positions after the warm-up clips, never two in a row when there is room."""
    result = list(order)
    slots = sorted(rng.choice(np.arange(WARM_UP_CLIPS, len(order) + 1), size=len(checks),
                          replace=len(checks) > len(order) + 1 - WARM_UP_CLIPS))
    for offset, (slot, check) in enumerate(zip(slots, checks)):
        result.insert(int(slot) + offset, check)
    return result
