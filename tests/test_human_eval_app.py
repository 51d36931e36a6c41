"""The rating app driven through whole sessions with Streamlit's AppTest, checking blinding at every step."""

from __future__ import annotations

import importlib.util
import re

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from fluxbench.human_eval.app import STUDY_ENV  # noqa: E402
from fluxbench.human_eval.storage import Responses  # noqa: E402
from fluxbench.human_eval.study import Key, Study  # noqa: E402
from test_human_eval_support import make_study, secrets_of  # noqa: E402

APP = importlib.util.find_spec("fluxbench.human_eval.app").origin


@pytest.fixture
def study(tmp_path, monkeypatch):
    root = make_study(tmp_path, raters={"beginner": 1, "expert": 1}, attention_checks=1)
    monkeypatch.setenv(STUDY_ENV, str(root))
    monkeypatch.delenv("FLUXBENCH_HUMAN_EVAL_DB", raising=False)
    return root


def open_app(token: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if token is not None:
        at.query_params["rater"] = token
    return at.run()


def browser_view(at: AppTest) -> str:
    """Everything this page sends to the browser: element messages, widget keys and values, audio URLs."""
    parts = []

    def walk(node) -> None:
        if getattr(node, "proto", None) is not None:
            parts.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    parts += [f"{k}={at.session_state[k]!r}" for k in at.session_state]
    return "\n".join(parts)


def assert_blind(at: AppTest, secrets: list[str]) -> None:
    assert not at.exception, at.exception
    view = browser_view(at)
    leaked = [s for s in secrets if s in view]
    assert not leaked, f"the page reveals {leaked}"
    for audio in at.get("audio"):
        assert re.fullmatch(r".*/media/[0-9a-f]+\.wav", audio.proto.url), audio.proto.url


def button(at: AppTest, prefix: str):
    return next(b for b in at.button if b.label.startswith(prefix))


def answer_background(at: AppTest) -> AppTest:
    for radio in at.radio:  # the group question's options are displayed descriptions of "expert"/"beginner"
        radio.set_value("expert" if radio.label == "Which describes you best?" else radio.options[0])
    return button(at, "Continue").click().run()


def rate(at: AppTest, ovl: int, rel: int) -> AppTest:
    at.radio(key=[r.key for r in at.radio if r.key.startswith("ovl-")][0]).set_value(ovl)
    at.radio(key=[r.key for r in at.radio if r.key.startswith("rel-")][0]).set_value(rel)
    return button(at, "Save and").click().run()


def progress(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


def test_whole_session_resume_revise_and_blinding(study):
    loaded, key = Study.load(study), Key.load(study)
    secrets = secrets_of(study)
    plan = next(p for p in loaded.raters.values() if p.group == "beginner")
    total = len(plan.order)
    assert total == 3 * 4 + 1

    at = open_app(plan.token)
    assert_blind(at, secrets)
    assert "Before you start" in [s.value for s in at.subheader]
    assert len(at.radio) == 4  # group assigned at design time: not asked
    button(at, "Continue").click().run()
    assert "Please answer every question." in [w.value for w in at.warning]
    at = answer_background(at)
    assert_blind(at, secrets)
    assert progress(at) == f"Clip 1 of {total} · 0 rated"
    assert at.expander[0].proto.expanded  # instructions open before the first rating
    assert "Bad" in at.radio[0].options[0] and "Excellent" in at.radio[0].options[4]  # anchored labels
    assert [r.value for r in at.radio] == [None, None]  # no default that would anchor the rater

    # Saving with one rating missing warns and stores nothing.
    at.radio[0].set_value(3)
    button(at, "Save and").click().run()
    assert "Please give both ratings" in at.warning[0].value
    assert Responses(f"sqlite:///{study / 'responses.sqlite'}").all_ratings() == []

    shown = []
    for step in range(5):
        shown.append(at.markdown[-1].value)  # the caption heading of this clip
        at = rate(at, 1 + step % 5, 5 - step % 5)
        assert_blind(at, secrets)
    assert progress(at) == f"Clip 6 of {total} · 5 rated"

    # A new browser session with the same link resumes at the first unrated clip.
    at = open_app(plan.token)
    assert progress(at) == f"Clip 6 of {total} · 5 rated"
    assert not at.expander[0].proto.expanded

    # Going back shows the stored rating; revising replaces it.
    button(at, "← Previous").click().run()
    assert progress(at) == f"Clip 5 of {total} · 5 rated"
    assert [r.value for r in at.radio] == [5, 1]
    at = rate(at, 2, 2)
    assert progress(at) == f"Clip 6 of {total} · 5 rated"

    for step in range(5, total):
        at = rate(at, 4, 3)
        assert_blind(at, secrets)
    assert any(plan.completion_code in m.value for m in at.markdown)
    assert "All your ratings are saved" in at.success[0].value

    stored = {r.clip_id: r for r in Responses(f"sqlite:///{study / 'responses.sqlite'}").all_ratings()}
    assert set(stored) == set(plan.order)
    assert [(stored[c].ovl, stored[c].rel) for c in plan.order[:5]] == [(1, 5), (2, 4), (3, 3), (4, 2), (2, 2)]
    assert stored[plan.order[4]].revisions == 2
    assert all((stored[c].ovl, stored[c].rel) == (4, 3) for c in plan.order[5:])
    # The captions shown were those of the rater's own clips, in the rater's order.
    for caption, clip in zip(shown, plan.order):
        assert loaded.clips[clip].caption.split(",")[0].replace("-", r"\-") in caption
    assert sum(key.entries[c].attention_check for c in stored) == 1


def test_raters_see_only_their_own_ratings(study):
    loaded = Study.load(study)
    first, second = loaded.raters.values()
    at = answer_background(open_app(first.token))
    at = rate(at, 5, 5)
    at = answer_background(open_app(second.token))
    assert progress(at) == f"Clip 1 of {len(second.order)} · 0 rated"
    assert [r.value for r in at.radio] == [None, None]
    responses = Responses(f"sqlite:///{study / 'responses.sqlite'}")
    assert responses.ratings_of(second.token) == {}
    assert len(responses.ratings_of(first.token)) == 1


def test_links_must_be_valid(study):
    at = open_app("not-a-real-token")
    assert "This link is not valid" in at.error[0].value
    assert not at.radio and not at.get("audio")
    at = open_app(None)
    assert at.text_input[0].label == "Access code"
    at.text_input[0].input(next(iter(Study.load(study).raters)))
    at = button(at, "Start").click().run()
    assert "Before you start" in [s.value for s in at.subheader]


def test_self_described_group(tmp_path, monkeypatch):
    root = make_study(tmp_path, raters={None: 1}, attention_checks=0)
    monkeypatch.setenv(STUDY_ENV, str(root))
    (plan,) = Study.load(root).raters.values()
    at = open_app(plan.token)
    assert at.radio[0].label == "Which describes you best?" and len(at.radio) == 5
    at = answer_background(at)  # picks "expert"
    record = Responses(f"sqlite:///{root / 'responses.sqlite'}").rater(plan.token)
    assert record.group == "expert" and record.background["self_described"] == "expert"
    assert record.background["listening"] == "Headphones"
