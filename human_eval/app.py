"""The rating app, a Streamlit script: `fluxbench human-eval serve STUDY` runs
`streamlit run app.py -- --study STUDY` (or set $FLUXBENCH_HUMAN_EVAL_STUDY).

A rater opens their personal link (`/?rater=TOKEN`), answers a few background questions once, then rates each
clip for overall quality (OVL) and relevance to the caption (REL) on 1-5 with anchored labels. Every rating is
stored as soon as it is submitted, so closing the tab and reopening the link resumes at the first unrated clip.

Blinding: the app reads only study.json (opaque clip ids, captions, audio files), never key.json; audio is sent
as bytes (the browser sees a content-hash URL, no file name); widget keys carry only the position in the
rater's own order; a rater only ever reads their own ratings.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

STUDY_ENV = "FLUXBENCH_HUMAN_EVAL_STUDY"
TOKEN_PARAM = "rater"

BACKGROUND_GROUP_OPTIONS = {
    "expert": "Expert: I have formal music training or work with music or audio professionally "
              "(musician, producer, audio engineer, music researcher)",
    "beginner": "Beginner: I enjoy music but have no formal training and no professional music or audio experience",
}
TRAINING_OPTIONS = ("None", "Less than 2 years", "2 to 5 years", "5 to 10 years", "More than 10 years")
PLAYING_OPTIONS = ("No", "Yes, as a hobby", "Yes, professionally")
LISTENING_OPTIONS = ("Headphones", "External loudspeakers", "Laptop or phone speakers")
HEARING_OPTIONS = ("No known hearing impairment", "Some hearing impairment", "Prefer not to say")


def study_root() -> Path:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--study")
    known, _ = parser.parse_known_args()
    root = known.study or os.environ.get(STUDY_ENV)
    if not root:
        raise SystemExit(f"no study given: run through `fluxbench human-eval serve STUDY` or set ${STUDY_ENV}")
    return Path(root)


def escape_markdown(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", text)


def main() -> None:
    import streamlit as st

    from fluxbench.human_eval.storage import Responses, database_url
    from fluxbench.human_eval.study import Study

    @st.cache_resource
    def load_study(root: str) -> Study:
        return Study.load(root)

    @st.cache_resource
    def open_responses(url: str, root: str) -> Responses:
        return Responses(url, study=load_study(root))

    root = study_root()
    study = load_study(str(root))
    responses = open_responses(database_url(root), str(root))
    st.set_page_config(page_title=study.title, page_icon="🎧", layout="centered")
    st.title(study.title)

    token = st.query_params.get(TOKEN_PARAM)
    if not token:
        ask_for_token(st)
        return
    plan = study.raters.get(token)
    if plan is None:
        st.error("This link is not valid. Please open the personal link you were given.")
        return
    record = responses.rater(token)
    if record is None:
        background_form(st, responses, plan)
        return

    own = responses.ratings_of(token)
    total = len(plan.order)
    if "position" not in st.session_state:
        # Resume at the first clip this rater has not rated yet.
        st.session_state.position = next((i for i, c in enumerate(plan.order) if c not in own), total)
    position = st.session_state.position
    if position >= total:
        finished(st, plan, total)
        return
    rating_page(st, study, responses, plan, own, position)


def ask_for_token(st) -> None:
    st.write("Welcome! Please open the personal link you were given, or enter your access code.")
    with st.form("access"):
        code = st.text_input("Access code")
        if st.form_submit_button("Start") and code.strip():
            st.query_params[TOKEN_PARAM] = code.strip()
            st.rerun()


def background_form(st, responses, plan) -> None:
    st.subheader("Before you start")
    st.write("A few questions about your musical background. They help us compare groups of listeners; "
             "your answers are stored with your ratings only.")
    with st.form("background"):
        group = None
        if plan.group is None:
            group = st.radio("Which describes you best?", list(BACKGROUND_GROUP_OPTIONS), index=None,
                             format_func=BACKGROUND_GROUP_OPTIONS.get)
        training = st.radio("Formal music training (lessons, music school, degree)", TRAINING_OPTIONS, index=None)
        playing = st.radio("Do you play an instrument or sing?", PLAYING_OPTIONS, index=None)
        listening = st.radio("How will you listen? (headphones recommended)", LISTENING_OPTIONS, index=None)
        hearing = st.radio("Hearing", HEARING_OPTIONS, index=None)
        submitted = st.form_submit_button("Continue", type="primary")
    if submitted:
        answers = {"training": training, "plays_or_sings": playing, "listening": listening, "hearing": hearing}
        if (plan.group is None and group is None) or any(v is None for v in answers.values()):
            st.warning("Please answer every question.")
            return
        if plan.group is None:
            answers["self_described"] = group
        responses.register_rater(plan.token, plan.group or group, answers)
        st.rerun()


def instructions(st, expanded: bool) -> None:
    from fluxbench.human_eval.study import ANCHORS, ASPECT_QUESTIONS

    with st.expander("How to rate", expanded=expanded):
        st.markdown(
            "Listen to each clip to the end (headphones, a quiet room, a comfortable fixed volume), read its "
            "caption, then give two ratings from 1 to 5:")
        for aspect in ("ovl", "rel"):
            labels = ", ".join(f"{score} = {label}" for score, label in ANCHORS[aspect].items())
            st.markdown(f"- **{ASPECT_QUESTIONS[aspect]}** {labels}.")
        st.markdown("Rate quality and relevance separately: a clip can sound great and still not match its "
                    "caption. Your ratings are saved as you go; you can close the page and come back later.")


def rating_page(st, study, responses, plan, own: dict, position: int) -> None:
    from fluxbench.human_eval.study import ANCHORS, ASPECT_QUESTIONS, SCORES

    total = len(plan.order)
    clip = study.clips[plan.order[position]]
    done = sum(c in own for c in plan.order)
    st.progress(done / total, text=f"Clip {position + 1} of {total} · {done} rated")
    instructions(st, expanded=done == 0)

    with st.container(border=True):
        st.caption("Caption")
        st.markdown(f"#### {escape_markdown(clip.caption)}")
        st.audio(study.audio_path(clip.clip_id).read_bytes(), format="audio/wav")

    previous = own.get(clip.clip_id)
    with st.form(f"rating-{position}", border=False):
        scores = {}
        for index, aspect in enumerate(("ovl", "rel")):
            scores[aspect] = st.radio(
                f"**{ASPECT_QUESTIONS[aspect]}**", SCORES, horizontal=True, key=f"{aspect}-{position}",
                index=None if previous is None else SCORES.index(previous[index]),
                format_func=lambda score, aspect=aspect: f"{score} · {ANCHORS[aspect][score]}")
        back_column, next_column = st.columns([1, 1])
        back = back_column.form_submit_button("← Previous clip", disabled=position == 0)
        label = "Save and finish" if position == total - 1 else "Save and next →"
        save = next_column.form_submit_button(label, type="primary")
    if back:
        st.session_state.position = position - 1
        st.rerun()
    if save:
        if scores["ovl"] is None or scores["rel"] is None:
            st.warning("Please give both ratings (OVL and REL) before moving on.")
            return
        responses.save_rating(plan.token, clip.clip_id, scores["ovl"], scores["rel"])
        own = {**own, clip.clip_id: (scores["ovl"], scores["rel"])}
        # Go on to the next unrated clip after this one, or to the end when everything is rated.
        later = [i for i in range(position + 1, total) if plan.order[i] not in own]
        earlier = [i for i in range(position) if plan.order[i] not in own]
        st.session_state.position = (later or earlier or [total])[0]
        st.rerun()


def finished(st, plan, total: int) -> None:
    st.progress(1.0, text=f"All {total} clips rated")
    st.success("Thank you! All your ratings are saved.")
    st.markdown(f"Your completion code: **{plan.completion_code}**")
    if st.button("Review my last rating"):
        st.session_state.position = total - 1
        st.rerun()


if __name__ == "__main__":
    main()
