"""The commands of the edges (issue 16 part B), registered by meterspec.cli:

    meterspec convert FILE                                    numbers at the edge (MS-CNV)

They use cli.py's machinery (bounded lines, the error report, outputs checked against inputs,
exit statuses of MS-ERR-004) through the `command` factory it passes in; their inputs beyond
the main one are named in EDGE_INPUTS, so the same-file check of MS-ERR-013 covers them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meterspec.cli import Streams

EDGE_INPUTS: tuple[tuple[str, str], ...] = ()
"""Inputs of these commands beyond `file` (attribute, flag), for cli._overwritten_input."""

Command = Callable[..., argparse.ArgumentParser]


def register_edges(commands: Any, command: Command) -> None:
    """Add `convert` to the parser (`command` is cli._parser's factory)."""
    sub = command("convert", "Convert NDJSON events whose property values may be JSON numbers "
                  "into EventPayloads: each number from its text into its canonical quantity "
                  "string, never through a float; anything else is reported (MS-CNV).",
                  _convert)
    sub.add_argument("file", help="payloads NDJSON file, '-' for stdin")


def _convert(args: argparse.Namespace, streams: Streams) -> int:
    """MS-CNV-004: every good line converted, every bad one reported with its line number."""
    from meterspec.cli import _lines
    from meterspec.codec import encode
    from meterspec.convert import convert_line
    from meterspec.errors import MeterspecError

    written = 0
    for number, line in _lines(streams.source, "convert", streams.report.reject):
        try:
            event = convert_line(line)
        except MeterspecError as error:
            streams.report.reject(error, number)
            continue
        streams.out.write(encode(event) + b"\n")
        written += 1
    return written
