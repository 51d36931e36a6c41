"""`fluxbench human-eval`: blinded OVL/REL listening tests.

  create STUDY --system NAME=FOLDER ... [--ground-truth FOLDER] --raters beginner=10,expert=10
  serve STUDY [--port 8501]      the Streamlit rating app; hand each rater the link from STUDY/raters.csv
  results STUDY                  Table 4 (means, 95% CIs, agreement) printed and written to STUDY/results/
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from fluxbench import FluxbenchError
from fluxbench.inputs import (existing_dir, existing_file, float_range, int_range, non_negative_int, output_dir,
                              positive_int, seconds, seed_int, text_file)

log = logging.getLogger(__name__)

DATABASE_HELP = ("SQLAlchemy URL of the ratings database (default: $FLUXBENCH_HUMAN_EVAL_DB, else "
                 "STUDY/responses.sqlite); e.g. postgresql+psycopg://user@host/db for a hosted study")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{create,serve,results}")

    create = sub.add_parser("create", help="build a blinded study folder from systems' audio folders")
    create.add_argument("study", type=Path, help="new study folder")
    create.add_argument("--system", action="append", default=[], metavar="NAME=FOLDER", required=True,
                        help="a system's audio (files named <prompt id>.wav, directly or under audio/); repeat")
    create.add_argument("--ground-truth", type=existing_dir, metavar="FOLDER",
                        help=f"reference recordings for the same prompts, rated as the system {'ground truth'!r}")
    create.add_argument("--captions", type=text_file, metavar="FILE",
                        help="CSV/TSV/JSON/JSONL with id and caption (default: a sidecar in a system folder)")
    create.add_argument("--raters", default="beginner=10,expert=10",
                        help="GROUP=COUNT,... with groups beginner/expert (assigned now), or a plain count "
                             "(each rater picks a group at first visit) [%(default)s]")
    create.add_argument("--ratings-per-item", type=positive_int, metavar="K",
                        help="raters per prompt in each group (default: every rater rates every prompt)")
    create.add_argument("--prompts", type=positive_int, metavar="N", help="use a random subset of N prompts")
    create.add_argument("--attention-checks", type=non_negative_int, default=2, metavar="N",
                        help="known-bad clips per rater (pass: OVL <= 2) [%(default)s]")
    create.add_argument("--attention-clip", type=existing_file, action="append", default=[], metavar="FILE",
                        help="your own known-bad clip (default: a stimulus buried in noise); repeatable")
    create.add_argument("--loudness", type=float_range(-70, 0), default=-23.0, metavar="LUFS",
                        help="integrated loudness of every clip [%(default)s]")
    create.add_argument("--no-loudness", action="store_true", help="keep the original levels")
    create.add_argument("--sample-rate", type=int_range(1000, 384_000),
                        help="rate of all clips (default: lowest input rate)")
    create.add_argument("--duration", type=seconds, metavar="SECONDS", help="length of all clips (default: shortest)")
    create.add_argument("--title", default="Listening test", help="shown to raters; must not name a system")
    create.add_argument("--base-url", default="http://localhost:8501",
                        help="address raters will open, used in the links of raters.csv [%(default)s]")
    create.add_argument("--seed", type=seed_int, default=0)

    serve = sub.add_parser("serve", help="run the rating app (Streamlit)")
    serve.add_argument("study", type=Path)
    serve.add_argument("--port", type=int_range(1, 65535), default=8501)
    serve.add_argument("--address", default="127.0.0.1",
                       help="interface to listen on; 0.0.0.0 to reach it from other machines [%(default)s]")
    serve.add_argument("--db", help=DATABASE_HELP)

    results = sub.add_parser("results", help="Table 4: means, 95%% CIs and agreement per system and group")
    results.add_argument("study", type=Path)
    results.add_argument("--db", help=DATABASE_HELP)
    results.add_argument("--out", type=output_dir, help="folder for human_eval.json, table4.md, table4.csv "
                                                  "(default: STUDY/results)")
    results.add_argument("--resamples", type=int_range(2), default=2000, help="bootstrap resamples [%(default)s]")
    results.add_argument("--max-failed-checks", type=non_negative_int, default=0,
                         help="exclude raters failing more attention checks than this [%(default)s]")
    results.add_argument("--seed", type=seed_int, default=0)
    results.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown",
                         help="what to print [%(default)s]")


def main(args: argparse.Namespace) -> int:
    return {"create": _create, "serve": _serve, "results": _results}[args.action](args)


def _create(args: argparse.Namespace) -> int:
    from fluxbench.human_eval.design import GROUND_TRUTH, DesignOptions, create_study, parse_system
    from fluxbench.human_eval.plan import parse_raters

    systems = dict(parse_system(spec) for spec in args.system)
    if len(systems) != len(args.system):
        raise FluxbenchError("--system: a system name is given twice")
    if args.ground_truth is not None:
        if GROUND_TRUTH in systems:
            raise FluxbenchError(f"--ground-truth: a system is already called {GROUND_TRUTH!r}")
        systems[GROUND_TRUTH] = Path(args.ground_truth)
    options = DesignOptions(
        raters=parse_raters(args.raters), ratings_per_prompt=args.ratings_per_item, prompts=args.prompts,
        attention_checks=args.attention_checks, attention_clips=[Path(p) for p in args.attention_clip],
        loudness_lufs=None if args.no_loudness else args.loudness, sample_rate=args.sample_rate,
        duration=args.duration, seed=args.seed, title=args.title, base_url=args.base_url)
    summary = create_study(args.study, systems, options, Path(args.captions) if args.captions else None)
    print(f"study {summary['study']}: {len(summary['systems'])} systems x {summary['prompts']} prompts = "
          f"{summary['clips'] - summary['attention_checks']} clips + {summary['attention_checks']} attention "
          f"checks, {summary['raters']} raters; audio {summary['sample_rate']} Hz mono, "
          f"{summary['duration_seconds']} s")
    print(f"rater links: {summary['raters_file']}")
    print(f"next: fluxbench human-eval serve {summary['study']}")
    return 0


def serve_command(study: Path, port: int, address: str) -> list[str]:
    """The `streamlit run` invocation: headless, no telemetry, no file watcher, no error details for raters."""
    import importlib.util

    app = importlib.util.find_spec("fluxbench.human_eval.app").origin
    return [
        sys.executable, "-m", "streamlit", "run", app,
        "--server.headless", "true",
        "--server.address", address,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--server.enableStaticServing", "false",
        "--browser.gatherUsageStats", "false",
        "--client.showErrorDetails", "false",
        "--client.toolbarMode", "minimal",
        "--global.developmentMode", "false",
        "--theme.base", "light",
        "--", "--study", str(study.resolve()),
    ]


def _serve(args: argparse.Namespace) -> int:
    from fluxbench.human_eval.storage import DATABASE_ENV, Responses, database_url
    from fluxbench.human_eval.study import Study

    study = Study.load(args.study)  # fail here, in one line, rather than inside the app
    url = database_url(args.study, args.db)
    Responses(url).close()
    env = dict(os.environ, **{DATABASE_ENV: url})
    print(f"serving {study.title!r} ({len(study.raters)} raters) on http://{args.address}:{args.port}/ ; "
          f"links in {args.study / 'raters.csv'}; Ctrl-C stops", flush=True)
    server = subprocess.Popen(serve_command(args.study, args.port, args.address), env=env)
    # Stopping this command stops the app too (a service manager sends SIGTERM to this process only).
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        code = server.wait()
        return 0 if code in (-signal.SIGTERM, -signal.SIGINT) else code
    except KeyboardInterrupt:
        server.terminate()
        server.wait(timeout=30)
        return 0


def _results(args: argparse.Namespace) -> int:
    import json

    from fluxbench.human_eval.analysis import analyse_study, write_results

    results = analyse_study(args.study, args.db, resamples=args.resamples, seed=args.seed,
                            max_failed_checks=args.max_failed_checks)
    files = write_results(results, Path(args.out) if args.out else args.study / "results")
    if args.format == "markdown":
        print(results.table.to_markdown(), end="")
    elif args.format == "csv":
        print(results.table.to_csv(), end="")
    else:
        print(json.dumps(results.to_json(), indent=1))
    log.info("written: %s", ", ".join(str(p) for p in files.values()))
    return 0
