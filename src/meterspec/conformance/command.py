"""`meterspec conformance check | build | run`: argument parsing and exit codes."""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from meterspec.cli_guide import os_error_text
from meterspec.conformance import build, check, report
from meterspec.conformance.cases import load_cases, load_suite, select
from meterspec.conformance.data import HarnessError, default_root
from meterspec.conformance.protocol import (
    DEFAULT_MAX_RESPONSE,
    DEFAULT_STDERR_SHOWN,
    ENVELOPE_DEPTH,
    MAX_DEPTH,
    RESPONSE_DEPTH,
    STDERR_TAIL,
    size_text,
)
from meterspec.conformance.runner import DEFAULT_TIMEOUT, REASON_LIMIT, Runner, make_adapter

EXIT_OK, EXIT_FAILED, EXIT_HARNESS = 0, 1, 2

RUN_LIMITS = (
    "The harness bounds what it takes from an adapter (INTERPRETING.md 5): a response is one "
    f"line of at most --max-response bytes whose objects and arrays nest at most "
    f"{RESPONSE_DEPTH} deep ({MAX_DEPTH} for a document, MS-ERR-008, and {ENVELOPE_DEPTH} for "
    "the envelope); a response that breaks a bound, or is late, makes its case errored and "
    "the adapter is killed, with every process it started, and restarted. The adapter's "
    "stderr is read as "
    "it comes; --max-stderr bytes of it are shown, and an errored case keeps the last "
    f"{size_text(STDERR_TAIL)} the adapter wrote while it ran in --report. Reasons are clipped "
    f"to {REASON_LIMIT} characters. The reports name the suite: its version and the SHA-256 "
    "of its suite-v1.json. Exit status: 0 if every selected case passed (with --allow-skips: "
    "passed or not claimed), 1 if not (or the deadline passed), 2 if the harness could not "
    "run.")
_SIZE = re.compile(r"([0-9]+)\s*(?:([KMG])(?:I?B)?|B)?", re.IGNORECASE)


def _size(text: str) -> int:
    """A byte count: 1048576, 1024K, 1M, 16MiB, 1G."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or with K, M or G)")
    unit = match.group(2)
    return int(match.group(1)) << (10 * ("KMG".index(unit.upper()) + 1) if unit else 0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def register(commands: Any) -> None:
    """Add the `conformance` command group to the `meterspec` subcommands."""
    group = commands.add_parser(
        "conformance", help="Check, build or run the conformance suite.",
        description="The conformance suite (conformance/INTERPRETING.md).")
    group.set_defaults(conformance=run_command)
    sub = group.add_subparsers(dest="action", required=True)
    suite_help = ("the conformance directory (with cases/v1/), or for run also a "
                  "suite-v1.json file; default: the one shipped with meterspec")

    parser = sub.add_parser("check", help="Validate the suite itself.")
    parser.add_argument("--suite", type=Path, help=suite_help)
    parser.add_argument("--specs", type=Path,
                        help="the specs directory; default: specs/ next to the suite")

    parser = sub.add_parser("build", help="Regenerate suite-v1.json and its checksum.")
    parser.add_argument("--suite", type=Path, help=suite_help)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files on disk are out of date")

    parser = sub.add_parser("run", help="Drive an implementation through the suite.",
                            description="Drive an implementation through the suite. "
                            + RUN_LIMITS)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--impl", metavar="COMMAND",
                        help="the adapter's command line, or python:meterspec (in-process)")
    # Issue 15: the HTTP profile (meterspec.conformance.http_profile), no adapter needed.
    target.add_argument("--http", metavar="URL", help="a server implementing the HTTP "
                        "binding (specs/http.md): the ingestion, metering and aggregation "
                        "cases it can express are run through it, the others reported "
                        "skipped (not claimed); needs --api-key (scope admin)")
    parser.add_argument("--api-key", metavar="KEY", help="with --http: the Bearer key "
                        "(default: $METERSPEC_API_KEY)")
    parser.add_argument("--suite", type=Path, help=suite_help)
    parser.add_argument("--area", action="append", default=[], help="only this area")
    parser.add_argument("--feature", action="append", default=[],
                        help="only cases with this feature")
    parser.add_argument("--case", action="append", default=[], help="only this case id")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="seconds to wait for each response (default %(default)g; the "
                        "start response gets at least 30)")
    parser.add_argument("--deadline", type=_seconds, metavar="SECONDS",
                        help="stop the whole run after this many seconds: the adapter is "
                        "killed, the cases not yet run are reported as skipped (not run), the "
                        "reports are written and the exit status is 1 (default: none)")
    parser.add_argument("--max-response", type=_size, default=DEFAULT_MAX_RESPONSE,
                        metavar="BYTES", help="longest response line accepted, in bytes or "
                        f"with K, M or G (default {size_text(DEFAULT_MAX_RESPONSE)})")
    parser.add_argument("--max-stderr", type=_size, default=DEFAULT_STDERR_SHOWN,
                        metavar="BYTES", help="how much of the adapter's stderr to show per "
                        f"run (default {size_text(DEFAULT_STDERR_SHOWN)}; 0: none); the rest "
                        "is read and dropped")
    parser.add_argument("--report", type=Path, metavar="FILE.jsonl",
                        help="write a JSON-lines report")
    parser.add_argument("--markdown", type=Path, metavar="FILE.md",
                        help="write the summary tables as Markdown")
    parser.add_argument("--validate-protocol", action="store_true",
                        help="check every message both ways against protocol.schema.json")
    parser.add_argument("--allow-skips", action="store_true",
                        help="exit 0 although cases were skipped, if each was skipped because "
                        "the implementation does not claim it (its start response does not "
                        "list the case's operation, or lists features and not every one of "
                        "the case's); they are still reported as skipped and count against "
                        "the score. A claimed case that is skipped (by the adapter, or not run "
                        "before --deadline), fails or errors still fails the run. Default: "
                        "every selected case must pass")

    parser = sub.add_parser(
        "badge", help="Write a conformance badge (SVG) from a run's report.",
        description="Write a conformance badge (SVG) to standard output from a JSON-lines "
        "report of `meterspec conformance run --report`: the suite's version and the cases "
        "passed of the cases run; green when all passed, blue when every claimed case passed "
        "(--allow-skips), amber or red otherwise. Embed it with ![conformance](badge.svg).")
    parser.add_argument("report", metavar="REPORT", help="the report (.jsonl), '-' for stdin")


def run_command(args: argparse.Namespace) -> int:
    try:
        if args.action == "badge":  # issue 17: needs a report, not a suite
            return _badge(args.report)
        root = (args.suite or default_root()).resolve()
        if args.action == "check":
            return _check(root, args.specs)
        if args.action == "build":
            return _build(root, args.check)
        return _run(root, args)
    except HarnessError as error:
        sys.stderr.write(f"meterspec conformance: {error}\n")
        return EXIT_HARNESS
    except KeyboardInterrupt:
        return 130


def _badge(path: str) -> int:
    from meterspec.conformance import badge

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HarnessError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
                           ) from None
    sys.stdout.write(badge.svg(badge.from_report(text)))
    return EXIT_OK


def _check(root: Path, specs: Path | None) -> int:
    specs = specs or root.parent / "specs"
    problems = list(check.check(root, specs))
    pending = check.pending_specs(root)
    if pending:
        print(f"not yet in the suite's scope (cases/v1/PENDING): {', '.join(sorted(pending))}")
    for problem in problems:
        print(problem)
    if problems:
        print(f"conformance check: {len(problems)} problem(s)")
        return EXIT_FAILED
    print(f"conformance check: {len(load_cases(root))} cases, no problems")
    return EXIT_OK


def _build(root: Path, drift_check: bool) -> int:
    if drift_check:
        out_of_date = build.stale(root)
        if out_of_date:
            print(f"out of date: {', '.join(out_of_date)}; run `meterspec conformance build`")
            return EXIT_FAILED
        print("conformance build: up to date")
        return EXIT_OK
    for path in build.write(root):
        print(f"wrote {path}")
    return EXIT_OK


def _run(root: Path, args: argparse.Namespace) -> int:
    if args.http is not None:  # issue 15: the HTTP profile
        return _run_http(root, args)
    suite = load_suite(root)
    cases = select(load_cases(suite), areas=args.area, features=args.feature, ids=args.case)
    adapter = make_adapter(args.impl, args.timeout, max_response=args.max_response,
                           stderr_shown=args.max_stderr)
    outputs = []
    try:
        for path in (args.report, args.markdown):
            if path is not None:
                outputs.append(path.open("w", encoding="utf-8"))
    except OSError as error:
        for stream in outputs:
            stream.close()
        raise HarnessError(f"cannot write report: {os_error_text(error)}") from None
    with_files = iter(outputs)
    report_file = next(with_files) if args.report is not None else None
    markdown_file = next(with_files) if args.markdown is not None else None
    progress = report.Progress(len(cases), sys.stderr) if report.Progress.wanted(
        sys.stderr) else None  # issue 17: cases done, passed, failed, rate on a terminal
    try:
        try:
            outcome = Runner(adapter, validate=args.validate_protocol, progress=progress,
                             deadline=args.deadline).run(cases)
        finally:
            if progress is not None:
                progress.clear()
        run = replace(outcome, suite=suite.identity(), allow_skips=args.allow_skips)
        report.print_terminal(run, sys.stdout)
        try:
            if report_file is not None:
                report.write_jsonl(run, report_file)
            if markdown_file is not None:
                report.write_markdown(run, markdown_file)
        except OSError as error:  # a full disk, say
            raise HarnessError(f"cannot write report: {os_error_text(error)}") from None
    finally:
        for stream in outputs:
            stream.close()
    return EXIT_OK if run.ok else EXIT_FAILED


def _run_http(root: Path, args: argparse.Namespace) -> int:
    """`--http URL --api-key KEY`: the HTTP profile, reported as any run is. What it needs
    is checked before the suite is loaded (seconds): a mistake is said at once."""
    import os

    try:
        from meterspec.conformance import http_profile
    except ImportError:  # httpx is the http extra's, not a core dependency
        raise HarnessError("--http needs httpx: pip install 'meterspec[http]'") from None
    if not args.http.startswith(("http://", "https://")):
        raise HarnessError(f"--http needs an http:// or https:// URL, not {args.http!r}")
    key = args.api_key or os.environ.get("METERSPEC_API_KEY")
    if not key:
        raise HarnessError("--http needs --api-key KEY (or METERSPEC_API_KEY)")
    suite = load_suite(root)
    cases = select(load_cases(suite), areas=args.area, features=args.feature, ids=args.case)
    progress = report.Progress(len(cases), sys.stderr) if report.Progress.wanted(
        sys.stderr) else None
    try:
        outcome = http_profile.run(args.http, key, cases, args.timeout, progress=progress,
                                   deadline=args.deadline)
    except (http_profile.AnswerError, OSError) as error:
        raise HarnessError(f"{args.http}: {error}") from None
    finally:
        if progress is not None:
            progress.clear()
    run = replace(outcome, suite=suite.identity())
    report.print_terminal(run, sys.stdout)
    try:
        if args.report is not None:
            with args.report.open("w", encoding="utf-8") as stream:
                report.write_jsonl(run, stream)
        if args.markdown is not None:
            with args.markdown.open("w", encoding="utf-8") as stream:
                report.write_markdown(run, stream)
    except OSError as error:
        raise HarnessError(f"cannot write report: {os_error_text(error)}") from None
    return EXIT_OK if run.ok else EXIT_FAILED
