"""Guidance for people at the `meterspec` command line (issue 17): did-you-mean for misspelt
commands and options, an example and the exit statuses in every command's --help, '-' for
standard input in every file argument, one-line messages for files that cannot be opened, and
a hint when a file of one kind is given where another is expected.

Everything here is derived from the parser itself, so commands added later get it too.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from typing import Any, BinaryIO, NoReturn

# -------------------------------------------------------------- did you mean

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)'")


class GuidingParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors suggest the nearest command, choice or option. Its
    subparsers are GuidingParsers too (argparse makes them of the parent's class)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """argparse's, remembering the words parsed, which the error's suggestions look at."""
        self._words = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """The usage, the error and the nearest valid words; exit status 2."""
        self.print_usage(sys.stderr)
        hints = "".join(f"\n  did you mean {hint}?" for hint in self.suggestions(message))
        self.exit(2, f"{self.prog}: error: {message}{hints}\n")

    def suggestions(self, message: str) -> list[str]:
        """The nearest valid words to the misspelt ones of this error."""
        found: list[str] = []
        bad = _INVALID_CHOICE.search(message)
        if bad is not None:
            choices = [str(c) for action in self._actions for c in (action.choices or ())]
            found += difflib.get_close_matches(bad.group(1), choices, n=1, cutoff=0.5)
        leaf, words = self._leaf()
        options = [o for p in leaf for a in p._actions for o in a.option_strings]
        for word in words:
            name = word.split("=", 1)[0]
            if not name.startswith("-") or name == "-" or _is_option(name, options):
                continue
            near = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
            found += [f"{near[0]} (not {name})"] if near else []
        return found

    def _leaf(self) -> tuple[list[argparse.ArgumentParser], list[str]]:
        """The parsers the words went through (this one, its command, ...) and the words."""
        words: list[str] = getattr(self, "_words", [])
        chain: list[argparse.ArgumentParser] = [self]
        for word in words:
            following = subcommands(chain[-1]).get(word)
            if following is not None:
                chain.append(following)
        return chain, words


def _is_option(word: str, options: list[str]) -> bool:
    """A known option, or a prefix argparse accepts for one (allow_abbrev)."""
    return word in options or (word.startswith("--") and any(o.startswith(word)
                                                              for o in options))


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's commands by name ({} for a leaf)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(parser: argparse.ArgumentParser,
         path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path, ("conformance", "run") say, each once
    (aliases skipped)."""
    yield path, parser
    seen: set[int] = set()
    for name, sub in subcommands(parser).items():
        if id(sub) not in seen:
            seen.add(id(sub))
            yield from walk(sub, (*path, name))


# -------------------------------------------------------------- --help: example, exit statuses

Statuses = tuple[str, ...]
"""Exit statuses as `--help` lists them, one "code  meaning" string each."""
STREAM_EXIT: Statuses = (
    "0  every input line was accepted",
    "1  some were rejected, each on the error report with its line number",
    "2  a usage error, an unusable document (--config, --request, ...) or an output that "
    "could not be written")
"""The exit statuses of the pipeline commands (those with --errors) that EXIT_STATUSES does not
list."""
EXAMPLES = {
    ("meter",): "meterspec meter --config config.json events.ndjson > records.ndjson",
    ("aggregate",): "meterspec aggregate --request request.json records.ndjson",
    ("run",): "meterspec run --config config.json --request request.json events.ndjson",
    ("invoice",): "meterspec invoice --request invoice-request.json records.ndjson",
    ("reconcile",): "meterspec reconcile --request invoice-request.json --closed "
                    "invoices.ndjson records.ndjson",
    ("project",): "meterspec project --request invoice-request.json --as-of "
                  "2024-01-20T00:00:00Z records.ndjson",
    ("quota",): "meterspec quota checks.ndjson",
    ("validate",): "cat events.ndjson | meterspec validate event -",
    ("convert",): "meterspec convert payloads.ndjson > events.ndjson",
    ("completion",): "meterspec completion bash > ~/.local/share/bash-completion/completions/"
                     "meterspec",
    ("conformance", "check"): "meterspec conformance check",
    ("conformance", "build"): "meterspec conformance build --check",
    ("conformance", "run"): "meterspec conformance run --impl 'node adapter.js' "
                            "--report report.jsonl --markdown report.md",
    ("conformance", "badge"): "meterspec conformance badge report.jsonl > badge.svg",
}
"""Per command path, the one example its `--help` shows."""
EXIT_STATUSES: dict[tuple[str, ...], Statuses] = {
    ("validate",): ("0  every document is valid", "1  some are not, each reported",
                    "2  a usage error or an input that cannot be read"),
    ("completion",): ("0  the script was written", "2  a usage error"),
    ("conformance", "check"): ("0  no problems", "1  problems, one per line",
                               "2  the suite cannot be read"),
    ("conformance", "build"): ("0  written (with --check: up to date)", "1  out of date",
                               "2  the suite cannot be read"),
    ("conformance", "run"): ("0  every selected case passed", "1  not",
                             "2  the harness could not run"),
    ("conformance", "badge"): ("0  the badge was written",
                               "2  the report cannot be read or is not one"),
}
"""Per command path, its exit statuses when they are not the stream commands' or the generic
ones."""
GENERIC_EXIT: Statuses = ("0  success", "1  rejected input or problems found",
                          "2  a usage error or an input that cannot be read")
"""The exit statuses of any other command that EXIT_STATUSES does not list."""


class GuideFormatter(argparse.HelpFormatter):
    """Fills paragraphs as argparse does, but keeps an indented line (an example) as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        return "\n\n".join(
            "\n".join(indent + line for line in part.splitlines()) if part.startswith("  ")
            else super(GuideFormatter, self)._fill_text(part, width, indent)
            for part in paragraphs)


def _example(path: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    """The command's example, or one made from its required options and arguments."""
    if path in EXAMPLES:
        return EXAMPLES[path]
    words = ["meterspec", *path]
    for action in parser._actions:
        if action.option_strings and action.required:
            words += [action.option_strings[-1], _placeholder(action)]
        elif not action.option_strings and action.nargs not in ("*", "?", argparse.REMAINDER,
                                                                argparse.SUPPRESS):
            words.append(_placeholder(action))
    return " ".join(words)


def _placeholder(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    if action.dest == "file":
        return "input.ndjson"
    return str(action.metavar or action.dest.upper())


def explain(parser: argparse.ArgumentParser) -> None:
    """Give every command's --help an example and its exit statuses (the parser's epilog),
    and record each command's file options for the hints (`guide_inputs`)."""
    for path, sub in walk(parser):
        sub.formatter_class = GuideFormatter
        if not path or subcommands(sub):
            continue
        statuses = EXIT_STATUSES.get(path) or (STREAM_EXIT if "run" in sub._defaults
                                               else GENERIC_EXIT)
        lines = [line for status in statuses for line in textwrap.wrap(
            status, 76, initial_indent="  ", subsequent_indent="     ")]
        epilog = (f"Example:\n\n  {_example(path, sub)}\n\nExit status:\n\n"
                  + "\n".join(lines))
        sub.epilog = epilog if not sub.epilog else f"{sub.epilog}\n\n{epilog}"
        sub.set_defaults(guide_inputs={
            a.dest: (a.option_strings[-1] if a.option_strings else a.dest, a.help or "")
            for a in sub._actions if a.help and (" file" in a.help or "NDJSON" in a.help)})


# -------------------------------------------------------------- inputs: '-', missing files

@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """A file argument opened for reading; '-' is standard input (left open)."""
    if path == "-":
        yield sys.stdin.buffer
        return
    with open(path, "rb") as file:
        yield file


def stdin_twice(argv: list[str]) -> str | None:
    """'-' given for two inputs: standard input can be read only once."""
    count = sum(1 for word in argv if word == "-")
    return (f"standard input ('-') can be read only once, but '-' is given {count} times"
            if count > 1 else None)


_REASONS = {"ENOENT": "no such file", "EISDIR": "is a directory, not a file",
            "EACCES": "permission denied", "ENOTDIR": "a part of the path is not a directory",
            "ENAMETOOLONG": "the name is too long"}


def os_error_text(error: OSError) -> str:
    """An OSError in one line without errno text: 'no such file: x (did you mean y?)'."""
    import errno

    name = errno.errorcode.get(error.errno or 0, "")
    message = error.strerror or str(error)  # a message of ours keeps its case (workspaceID)
    reason = _REASONS.get(name) or message[:1].lower() + message[1:]
    where = error.filename
    if where is None:
        return reason
    folder, base = os.path.split(os.fsdecode(where))
    if name == "ENOENT" and folder and not os.path.isdir(folder):
        return f"no such directory: {folder} (for {where})"  # the folder is what is missing
    text = f"{reason}: {where}"
    if name == "ENOENT":
        try:
            names = os.listdir(folder or ".")
        except OSError:
            names = []
        near = difflib.get_close_matches(base, names, n=1, cutoff=0.6)
        if near:
            text += f" (did you mean {os.path.join(folder, near[0])}?)"
    return text


# -------------------------------------------------------------- NDJSON or one document

class _Replayed(io.RawIOBase):
    """The bytes already read from a stream, then the rest of it."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head, self._rest = memoryview(head), rest
        self._read = getattr(rest, "read1", rest.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        if self._head:
            size = min(len(target), len(self._head))
            target[:size], self._head = self._head[:size], self._head[size:]
            return size
        data = self._read(len(target))
        target[:len(data)] = data
        return len(data)


def detect_lines(source: BinaryIO, limit: int = 1 << 20) -> tuple[bool, BinaryIO]:
    """Whether the input is NDJSON: its first non-blank line is a whole JSON value and more
    follows (a single document cannot be that); and a stream that still yields every byte.
    Reads no further than the second line's first bytes (or `limit`, a longer first line)."""
    read = getattr(source, "read1", source.read)
    head = b""
    verdict = False
    while len(head) <= limit:
        chunk = read(1 << 16)
        head += chunk
        text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
        first, newline, rest = text.partition(b"\n")
        if newline and rest.strip(b" \t\r\n"):
            verdict = _is_json(first)
            break
        if not chunk:
            break
    return verdict, io.BufferedReader(_Replayed(head, source))


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):
        return False
    return True


# -------------------------------------------------------------- what kind of file is this

LINE_KINDS = {"events": "EventPayload", "records": "MeterRecord", "readings": "MeterReading",
              "QuotaChecks": "QuotaCheck", "invoices": "Invoice", "Invoices": "Invoice"}
"""How the commands' help texts name the documents of their NDJSON inputs."""
HEAD_BYTES = 1 << 16
"""How much of an input file is read to guess its kind, for the wrong-kind hints."""


@cache
def _titles() -> dict[str, frozenset[str]]:
    """Each schema's title and its required members (schemas/*.schema.json)."""
    titles: dict[str, frozenset[str]] = {}
    for entry in resources.files("meterspec").joinpath("schemas").iterdir():
        if entry.name.endswith(".schema.json"):
            schema = json.loads(entry.read_text(encoding="utf-8"))
            if schema.get("required") and schema.get("title"):
                titles[schema["title"]] = frozenset(schema["required"])
    return titles


@cache
def _kind_title(kind: str) -> str | None:
    """The schema title of a `validate` kind (KINDS names its schema file)."""
    from meterspec.schema import KINDS

    name = KINDS.get(kind)
    if name is None:
        return None
    entry = resources.files("meterspec").joinpath("schemas", f"{name}.schema.json")
    title = json.loads(entry.read_text(encoding="utf-8")).get("title")
    return title if isinstance(title, str) else None


def kind_of(value: object) -> str | None:
    """The schema title whose required members the object has most fully (all of them), or
    None when it has no schema's."""
    if not isinstance(value, dict):
        return None
    fits = [(len(required), title) for title, required in _titles().items()
            if required <= value.keys()]
    return max(fits)[1] if fits else None


def sniff(head: bytes) -> tuple[str, bool] | None:
    """What the first bytes of a file hold: (schema title, one per line?) or None."""
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        first = json.loads(lines[0])
    except ValueError:
        first = None
    if first is not None and len(lines) > 1:
        kind = kind_of(first)
        return None if kind is None else (kind, True)
    try:
        whole = json.loads(text)
    except ValueError:
        return None
    kind = kind_of(whole)
    return None if kind is None else (kind, False)


def _first_document(head: bytes) -> object:
    """The first JSON document of a file's head (one per line, or the whole), or None."""
    text = head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
    for candidate in (text.split("\n", 1)[0], text):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def _shared(document: object, title: str) -> int:
    """How many of the schema's required members the document has."""
    if not isinstance(document, dict):
        return 0
    return len(_titles().get(title, frozenset()) & document.keys())


def _described(kind: str, lines: bool) -> str:
    return f"NDJSON with one {kind} per line" if lines else f"one {kind} document"


def _expected(help_text: str) -> tuple[str, bool] | None:
    """What an argument's help says it takes: (schema title, one per line?)."""
    lines = "NDJSON" in help_text
    for word in re.findall(r"[A-Za-z]+", help_text):
        if word in LINE_KINDS:
            return LINE_KINDS[word], lines
        if word in _titles():
            return word, lines
    return None


def _head(path: str) -> bytes | None:
    if path == "-":
        return None
    try:
        with open(path, "rb") as file:
            return file.read(HEAD_BYTES)
    except OSError:
        return None


def input_named(args: argparse.Namespace, path: str) -> str | None:
    """The command's file argument (its dest) that names `path`."""
    inputs: dict[str, tuple[str, str]] = getattr(args, "guide_inputs", {})
    return next((d for d in inputs if getattr(args, d, None) == path), None)


def mismatch(args: argparse.Namespace, dest: str | None, head: bytes | None = None
             ) -> str | None:
    """A hint when the file given for the command's argument `dest` holds another kind of
    document than the argument takes: 'x.ndjson looks like NDJSON with one EventPayload per
    line; --config expects a MeteringConfig JSON file'. None when it looks right or unknown."""
    inputs: dict[str, tuple[str, str]] = getattr(args, "guide_inputs", {})
    if dest not in inputs:
        return None
    path = getattr(args, dest, None)
    found = None if path is None else sniff(head if head is not None else _head(path) or b"")
    if path is None or found is None:
        return None
    flag, help_text = inputs[dest]
    expected = _expected(help_text)
    kind = getattr(args, "kind", None)
    if expected is None and isinstance(kind, str):  # validate: its --kind says what it takes
        title = _kind_title(kind)
        document = _first_document(head if head is not None else _head(path) or b"")
        if title is None or _shared(document, title) >= _shared(document, found[0]):
            return None  # a broken document of the kind asked for, not another kind
        expected = (title, bool(getattr(args, "lines", False)))
    if expected is None or expected == found:
        return None
    what = help_text.split(" (")[0].split(", '-'")[0]
    if what.split()[0] in _titles() or what.endswith(" file"):
        what = ("an " if what[0] in "AEIOUaeiou" else "a ") + what
    name = "standard input" if path == "-" else path
    hint = (f"{name} looks like {_described(*found)}; "
            + (f"{args.command} reads {what}" if flag == "file" else f"{flag} expects {what}"))
    better = next((f for d, (f, h) in inputs.items() if d != dest and _expected(h) == found),
                  None)
    if better == "file":
        return hint + " (pass it as the input file)"
    return hint + (f" (pass it with {better})" if better else "")
