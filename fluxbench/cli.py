"""The `fluxbench` command.

Each subcommand lives in `fluxbench/commands/<name>.py` with `add_arguments(parser)` and `main(args) -> int`;
those modules keep heavy imports inside `main`, and only the chosen one is imported, so `--help` and
listings start instantly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from fluxbench import FluxbenchError, __version__

# name -> (one-line summary, module)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("benchmark a model on a set: generate, embed, score, record (offline demo by default)", "run"),
    "generate": ("turn captions into audio files with a registered model", "generate"),
    "score": ("compute FAD / FD / KL / IS / CLAP / KAD between generated and reference audio", "score"),
    "verify-backbones": ("check installed FAD backbone weights against fadtk's published per-song scores",
                         "verify_backbones"),
    "train": ("train a FluxMusic model (rectified flow or the DDPM/DDIM ablation)", "train"),
    "report": ("turn results files into tables and figures", "report"),
    "human-eval": ("design, serve and analyse blinded OVL/REL listening tests", "human_eval"),
    "models": ("list registered models", "models"),
    "sets": ("list registered evaluation sets", "sets"),
    "metrics": ("list the metrics and the backbones they are computed with", "metrics"),
}


def _top_level_help() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: fluxbench [--version] <command> [options]",
        "",
        "Evaluation, benchmarking and a model zoo for text-to-music generation.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (summary, _) in COMMANDS.items()]
    lines += ["", "Run `fluxbench <command> --help` for a command's options."]
    return "\n".join(lines)


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes end in one line on stderr (exit 2), like every other input error; --help shows usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def build_parser(command: str) -> tuple[argparse.ArgumentParser, object]:
    summary, module_name = COMMANDS[command]
    module = importlib.import_module(f"fluxbench.commands.{module_name}")
    parser = OneLineErrorParser(prog=f"fluxbench {command}", description=summary)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    module.add_arguments(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_top_level_help())
        return 0
    if argv[0] == "--version":
        print(f"fluxbench {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"fluxbench: error: unknown command {command!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    undecodable = next((arg for arg in rest if not _is_text(arg)), None)
    if undecodable is not None:  # bytes that are not UTF-8 reach Python as lone surrogates
        print(f"fluxbench {command}: error: argument {undecodable.encode('utf-8', 'backslashreplace').decode()!r} "
              f"is not UTF-8 text", file=sys.stderr)
        return 2
    parser, module = build_parser(command)
    try:
        args = parser.parse_args(rest)
    except SystemExit as stop:  # --help, or a usage error already reported in one line
        return stop.code if isinstance(stop.code, int) else 2
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        code = int(module.main(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that closed the pipe early is seen here
        return code
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted: stop quietly, as other command-line tools do. Point stdout
        # at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status of a tool ended by a closed pipe
    except FluxbenchError as error:
        print(f"fluxbench {command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system said no (permissions, a full disk, a file where a folder goes)
        where = f"{error.filename}: " if error.filename else ""
        print(f"fluxbench {command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fluxbench {command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _is_text(arg: str) -> bool:
    try:
        arg.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
