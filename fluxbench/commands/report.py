"""`fluxbench report`: tables (Markdown, LaTeX, CSV, HTML), figures (PNG + PDF) and an HTML page."""

from __future__ import annotations

import argparse
import logging

from fluxbench.inputs import float_range, int_range, non_negative_int, output_dir, text_file

log = logging.getLogger("fluxbench.report")


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="results.json files or run folders; LABEL=PATH names a row (default: the model name)")
    parser.add_argument("--format", default="md,latex,csv,html",
                        help="comma-separated table formats: md, latex, csv, html (html also writes index.html)")
    parser.add_argument("--out", default="report", type=output_dir, help="output folder (default: ./report)")
    parser.add_argument("--sets", type=_list, help="comma-separated evaluation sets, in column order")
    parser.add_argument("--metrics", type=_list,
                        help="comma-separated metrics, keys or labels (e.g. fad,kl_softmax,is,clap or FAD,KL,IS,CLAP)")
    parser.add_argument("--decimals", type=int_range(0, 12), default=2, help="decimals shown in the tables (default 2)")
    parser.add_argument("--reported", metavar="FILE", type=text_file,
                        help="JSON file of published rows to show instead of the ones shipped with the baselines")
    parser.add_argument("--no-reported", action="store_true", help="measured rows only")
    parser.add_argument("--listening", metavar="FILE", type=text_file,
                        help="listening-test results (JSON or CSV rows of system, group, ovl, ovl_ci95, rel, rel_ci95, "
                             "n, or the human-eval analysis output) for the Table-4 layout")
    parser.add_argument("--loss-logs", nargs="+", default=[], metavar="CSV",
                        help="training loss logs (CSV with step and loss columns); LABEL=PATH names a curve")
    parser.add_argument("--smooth", type=float_range(0, 1, high_open=True), default=0.9,
                        help="EMA smoothing of loss curves in [0, 1) (default 0.9)")
    parser.add_argument("--log-loss", action="store_true", help="loss curves on a log scale")
    parser.add_argument("--audio", nargs="+", default=[], metavar="DIR",
                        help="folders of <prompt id>.wav (one per model or training checkpoint), LABEL=DIR names a "
                             "column; default: the runs' generated clips")
    parser.add_argument("--examples", type=non_negative_int, default=4,
                        help="prompts in the mel grid and the page (default 4)")
    parser.add_argument("--prompts", type=_list, help="comma-separated prompt ids to show instead of the first few")
    parser.add_argument("--captions", metavar="FILE", type=text_file,
                        help="prompt id -> caption (JSON, JSON lines, CSV or TSV)")
    parser.add_argument("--scaling-x", choices=("parameters", "gflops"), default="parameters",
                        help="x axis of the scaling plot (default parameters)")
    parser.add_argument("--title", default="fluxbench report", help="title of the report page")


def main(args: argparse.Namespace) -> int:
    from fluxbench.reports.build import ReportOptions, build_report, parse_formats

    options = ReportOptions(
        runs=args.runs, formats=parse_formats(args.format), sets=args.sets, metrics=args.metrics,
        decimals=args.decimals, reported=args.reported, include_reported=not args.no_reported,
        listening=args.listening, loss_logs=args.loss_logs, smoothing=args.smooth, log_loss=args.log_loss,
        audio=args.audio, examples=args.examples, prompts=args.prompts, captions=args.captions,
        scaling_x=args.scaling_x, title=args.title)
    written = build_report(options, args.out)
    for kind in ("tables", "figures", "page"):
        for path in written[kind]:
            print(path)
    if written["audio"]:
        print(f"{len(written['audio'])} example clips under {args.out}/audio")
    return 0
