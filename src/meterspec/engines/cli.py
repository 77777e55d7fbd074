"""`meterspec run|aggregate --engine NAME`: the commands of meterspec.cli, on an engine.

The command line is the reference's, plus `--engine`, `--threads N` (the engine's threads;
default: one per core), `--master URL` (Spark: the cluster; default local[N]), more inputs
after the first (NDJSON files, Parquet files or directories; see meterspec.engines.sources
for how their rows are numbered) and `--parquet FILE` (DuckDB: the readings as Parquet
instead of NDJSON on standard output). Everything else is the
reference's own code: documents, outputs and their checks (MS-ERR-013), the error report,
the summary and the exit status (MS-ERR-004), so a run on an engine is told from a reference
run only by its speed. A job the engine cannot complete exactly ends with one line and exit
status 2, never a rounded result.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from meterspec.errors import MeterspecError, first_line

AVAILABLE = ("duckdb", "spark")


class EngineError(OSError):
    """The engine cannot run the job (not installed, not available, an input of another
    layout, a limit): meterspec.cli reports an OSError as one line with exit status 2."""


def main(argv: list[str]) -> int:
    """Parse a `run` or `aggregate` command line with the engine options, check it, and run
    it through meterspec.cli's own machinery with the engine doing the work."""
    from meterspec import cli

    parser = cli._parser(conformance=False)
    commands = _subcommands(parser)
    for name in ("run", "aggregate"):
        add_options(commands[name])
    args = parser.parse_args(argv)
    if getattr(args, "engine", None) is None:
        return cli._main(args)
    wrong = ("--master is Spark's" if args.master is not None and args.engine != "spark"
             else "--parquet is DuckDB's" if args.parquet is not None and args.engine != "duckdb"
             else None)
    if wrong is not None:
        cli._say(f"meterspec: {wrong}, not --engine {args.engine}'s")
        return cli.EXIT_USAGE
    if args.jobs != 1:
        cli._say("meterspec: --jobs is the reference's; an engine takes --threads")
        return cli.EXIT_USAGE
    refusal = _overwritten(args)
    if refusal is not None:
        cli._say(f"meterspec: {refusal}")
        return cli.EXIT_USAGE
    paths = [args.file, *args.more]
    if os.path.isdir(args.file):  # a Parquet directory, read by the engine; meterspec.cli
        args.file = os.devnull    # opens its one input as a file
    args.run = _runner(paths)
    return cli._main(args)


def add_options(sub: argparse.ArgumentParser) -> None:
    """The engine options of `run` and `aggregate`."""
    sub.add_argument("--engine", choices=AVAILABLE,
                     help="run on this engine instead of the reference (docs/engines.md); "
                     "output, report and exit status are the reference's")
    sub.add_argument("--threads", type=_threads, metavar="N",
                     help="the engine's threads (default: one per core)")
    sub.add_argument("--master", metavar="URL",
                     help="with --engine spark: the cluster's master URL (default local[N], N "
                     "from --threads)")
    sub.add_argument("--parquet", metavar="FILE",
                     help="with --engine: write the readings to FILE as Parquet, not NDJSON")
    sub.add_argument("more", nargs="*", metavar="INPUT",
                     help="with --engine: more inputs, read after the first (NDJSON files, "
                     "Parquet files or directories)")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("meterspec's parser has subcommands")


def _threads(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1024:
        raise argparse.ArgumentTypeError("an integer from 1 to 1024")
    return int(text)


def _overwritten(args: argparse.Namespace) -> str | None:
    """MS-ERR-013 for what meterspec.cli does not know of: the inputs after the first and
    --parquet. The first input and the other outputs it checks itself."""
    from meterspec import cli

    outputs = [("standard output", cli._fstat(sys.stdout))]
    outputs.append(("--errors " + args.errors, cli._stat(args.errors)) if args.errors
                   else ("standard error (the error report)", cli._fstat(sys.stderr)))
    inputs = [(f"the input {path}", cli._stat(path)) for path in args.more]
    if args.parquet is not None:
        written = cli._stat(args.parquet)
        inputs += [(f"the input {args.file}", cli._stat(args.file))]
        for name in ("config", "request"):
            if getattr(args, name, None) is not None:
                inputs.append((f"--{name} {getattr(args, name)}", cli._stat(getattr(args, name))))
        outputs.append((f"--parquet {args.parquet}", written))
    for output, out_stat in outputs:
        for source, in_stat in inputs:
            if out_stat is not None and in_stat is not None and (
                    out_stat.st_dev, out_stat.st_ino) == (in_stat.st_dev, in_stat.st_ino):
                return (f"{output} is the same file as {source}; refusing to write over an "
                        "input (MS-ERR-013)")
    return None


def _runner(paths: list[str]) -> Callable[[argparse.Namespace, Any], int]:
    """The command body meterspec.cli calls with its opened streams."""

    def run(args: argparse.Namespace, streams: Any) -> int:
        return run_on_engine(args, streams, paths)

    return run


def run_on_engine(args: argparse.Namespace, streams: Any, paths: list[str]) -> int:
    """Run the command's job on the engine: its documents checked as the reference
    checks them (unusable: exit 2), the readings to standard output (or --parquet), every
    rejected row to the report in row order."""
    from meterspec.codec import decode_config, decode_request
    from meterspec.metering import Meter
    from meterspec.readings import Aggregator

    config = None
    if args.command == "run":
        config = _usable(args.config, lambda data: _checked(decode_config(data), Meter))
    request = _usable(args.request, lambda data: _checked(decode_request(data), Aggregator))
    if args.engine == "spark":
        return _on_spark(args, streams, paths, config, request)
    try:
        from meterspec.engines.duckdb.engine import DuckDBEngine, LayoutError
        from meterspec.engines.ndjson import spool
        from meterspec.engines.sources import source_for
    except ImportError as error:
        raise EngineError("--engine duckdb needs DuckDB: pip install 'meterspec[duckdb]' "
                          f"({error})") from None
    import duckdb

    with DuckDBEngine(threads=args.threads) as engine:
        sources = [source_for(spool(streams.source, engine.workdir) if path == "-" else path)
                   for path in paths]
        try:
            if config is not None:
                result = engine.run(config, request, sources, parquet=args.parquet)
            else:
                result = engine.aggregate(request, sources, parquet=args.parquet)
        except LayoutError as error:
            raise EngineError(str(error)) from None
        except duckdb.Error as error:
            raise EngineError(f"the DuckDB engine stopped: {first_line(error)}") from None
        for number, problem in result.problems:
            streams.report.reject(problem, number)
        streams.report.duplicates = result.duplicates
        if args.parquet is None:
            result.write_to(streams.out)
    return result.count


def _on_spark(args: argparse.Namespace, streams: Any, paths: list[str], config: Any,
              request: Any) -> int:
    """run_on_engine on Spark (the master of --master, else local[--threads])."""
    try:
        from meterspec.engines.ndjson import spool
        from meterspec.engines.sources import source_for
        from meterspec.engines.spark.engine import SourceError, SparkEngine
        from meterspec.engines.spark.session import JavaMissingError, SparkStartError, jvm_error
    except ImportError as error:
        raise EngineError("--engine spark needs pyspark: pip install 'meterspec[spark]' "
                          f"({error})") from None
    try:
        engine = SparkEngine(master=args.master, threads=args.threads)
    except (JavaMissingError, SparkStartError) as error:
        raise EngineError(str(error)) from None
    except ImportError as error:
        raise EngineError("--engine spark needs pyspark: pip install 'meterspec[spark]' "
                          f"({error})") from None
    with engine:
        sources = [source_for(spool(streams.source, engine.workdir) if path == "-" else path)
                   for path in paths]
        try:
            if config is not None:
                result = engine.run(config, request, sources)
            else:
                result = engine.aggregate(request, sources)
        except SourceError as error:
            raise EngineError(str(error)) from None
        except Exception as error:  # Py4J and Spark errors: one line, exit 2
            if isinstance(error, MeterspecError):
                raise
            raise EngineError("the Spark engine stopped: "
                              f"{jvm_error(error, engine.workdir)}") from None
        finally:
            engine.shutdown()
        for number, problem in result.problems:
            streams.report.reject(problem, number)
        streams.report.duplicates = result.duplicates
        result.write_to(streams.out)
    return result.count


def _checked(document: Any, check: Callable[[Any], object]) -> Any:
    check(document)
    return document


def _usable(path: str, read: Callable[[bytes], Any]) -> Any:
    """A config or request file decoded and checked, or meterspec.cli's BadDocumentError
    (exit 2, its problems on stderr), as the reference reads it."""
    from meterspec import cli

    data = cli._document_bytes(path)
    try:
        return read(data)
    except MeterspecError as error:
        raise cli.BadDocumentError(path, error) from None


def engine_requested(argv: list[str]) -> bool:
    """Whether a command line asks for an engine (meterspec.cli hands it here)."""
    words = [word for word in argv if not word.startswith("-")]
    return words[:1] in (["run"], ["aggregate"]) and any(
        word == "--engine" or word.startswith("--engine=") for word in argv)

