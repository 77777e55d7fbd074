"""The harness protocol (INTERPRETING.md 5): message checks and the two kinds of adapter,
a subprocess speaking JSON lines and the reference called in-process.

An adapter under test may be hostile or broken, so the harness bounds everything it takes from
one (INTERPRETING.md 5, "The harness's own bounds"): a response is one line of at most
`max_response` bytes whose objects and arrays nest at most RESPONSE_DEPTH deep; no pipe is read or
written without a deadline; stderr is drained as it comes and only its start is shown; and an
adapter that is dropped is killed with every process it started, in whatever session."""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol

from jsonschema.exceptions import best_match

from meterspec.conformance import adapter as reference
from meterspec.conformance.data import HarnessError, validator
from meterspec.json_text import has_lone_surrogate

START: dict[str, Any] = {"cmd": "start", "version": 1}
STOP: dict[str, Any] = {"cmd": "stop"}
STOP_GRACE = 5.0
START_TIMEOUT = 30.0  # at least: an adapter's runtime may be slow to start, not to answer

KIB, MIB = 1 << 10, 1 << 20
MAX_DEPTH = 64
"""Deepest nesting of objects and arrays in a document (specs/errors.md MS-ERR-008), the
top-level value at depth 1."""
ENVELOPE_DEPTH = 16
"""Levels a response may add around the documents it carries: the response object, its
`output` array and a result document (`decode-text`'s `{"document": ...}`, 3 in all), with
room to spare."""
RESPONSE_DEPTH = MAX_DEPTH + ENVELOPE_DEPTH
"""Deepest nesting of objects and arrays in a response line: a 64-deep document in its
envelope is a valid answer; anything deeper is refused before it is parsed."""
DEFAULT_MAX_RESPONSE = 16 * MIB
"""Longest response line (--max-response): far above any answer in the suite (the largest
is some 100 KiB), and small enough that the harness's memory stays bounded."""
DEFAULT_STDERR_SHOWN = 64 * KIB
"""How much of an adapter's stderr a run shows on the terminal (--max-stderr)."""
STDERR_TAIL = 64 * KIB
"""How much of what an adapter wrote to stderr while a case ran its report line keeps."""

CHUNK = 64 * KIB  # one read or write on a pipe
POLL = 0.05  # seconds between checks that the adapter is still alive while waiting
EXIT_WAIT = 1.0  # seconds to wait for an exit status after the adapter closed its stdout
KILL_ROUNDS = 5  # scans for processes still holding the adapter's pipes
COOKIE = "METERSPEC_CONFORMANCE_ADAPTER"  # in the environment of the adapter's process tree
PROC = Path("/proc")


class ProtocolError(Exception):
    """The adapter broke the protocol: the case is errored and the adapter restarted. `stderr`
    is what the adapter wrote to stderr during the exchange, when there was an exchange."""

    def __init__(self, message: str, stderr: str | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr


class DeadlineError(Exception):
    """The run's deadline (--deadline) passed during an exchange: the adapter was killed and
    the case is not run, rather than errored (it is not the adapter's fault)."""


def size_text(size: int) -> str:
    """A byte count as the options and messages print it: 16 MiB, 64 KiB, 1000 bytes."""
    for unit, name in ((1 << 30, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def shorten(text: str, limit: int = 200) -> str:
    """text, or its start and "..." if it is longer than limit characters."""
    return text if len(text) <= limit else text[:limit] + "..."


def excerpt(data: bytes | str, limit: int = 200) -> str:
    """The start of some text an adapter sent, quoted, for a message."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return repr(shorten(text.rstrip("\n"), limit))


def schema_violation(message: object, definition: str) -> str | None:
    """The most relevant way message violates protocol.schema.json's $defs/definition."""
    error = best_match(validator("protocol", definition).iter_errors(message))
    if error is None:
        return None
    where = "".join(f"/{p}" for p in error.absolute_path)
    return f"{definition} message{' at ' + where if where else ''}: {error.message}"


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def started_problem(message: object) -> str | None:
    """What makes a start response unusable (checked always; the schema only if asked)."""
    if not isinstance(message, dict) or message.get("ready") is not True:
        return 'start response is not {"ready": true, ...}'
    info = message.get("implementation")
    if not isinstance(info, dict):
        return "start response has no implementation object"
    for name in ("name", "version", "language"):
        if not isinstance(info.get(name), str) or not info[name]:
            return f"implementation.{name} is not a non-empty string"
    if not _strings(info.get("operations")):
        return "implementation.operations is not an array of strings"
    if "features" in info and not _strings(info["features"]):
        return "implementation.features is not an array of strings"
    return None


def result_problem(message: object, seq: int) -> str | None:
    """What makes a run response unusable: checked always, schema or not."""
    if not isinstance(message, dict):
        return "response is not a JSON object"
    if message.get("seq") != seq or isinstance(message.get("seq"), bool):
        return f"response carries seq {shorten(repr(message.get('seq')))}, expected {seq}"
    kinds = [k for k in ("output", "error", "skipped", "errored") if k in message]
    if len(kinds) != 1:
        return "response needs exactly one of output, error, skipped, errored"
    value = message[kinds[0]]
    if kinds[0] == "output" and not isinstance(value, list):
        return "output is not an array"
    if kinds[0] == "error" and not (isinstance(value, list) and value and all(
            isinstance(p, dict) and isinstance(p.get("code"), str)
            and isinstance(p.get("path"), str) for p in value)):
        return "error is not a non-empty array of {code, path} strings"
    if kinds[0] in ("skipped", "errored") and not isinstance(value, str):
        return f"{kinds[0]} is not a string"
    return None


# --- parsing one response line ----------------------------------------------------------------

# A string, escapes included, to its closing quote or to the end of the text. Possessive, and it
# always matches once it has started, so stripping strings is linear even on unterminated ones.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA = [1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256)]
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTENT = re.compile(rb"[^ \t\r\n]")


def parse_response(raw: bytes) -> Any:
    """One response line as JSON, or ProtocolError: UTF-8 (MS-ERR-007), nesting at most
    RESPONSE_DEPTH deep (checked before parsing, without recursion), no duplicate
    members, no NaN, Infinity, number out of range or lone surrogate (which the reports could
    not write back as JSON)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolError(f"response is not UTF-8 ({error.reason} at byte {error.start}): "
                            f"{excerpt(raw)}") from None
    if _too_deep(raw):
        raise ProtocolError(f"response objects and arrays nest deeper than {RESPONSE_DEPTH} "
                            f"({MAX_DEPTH} for a document, MS-ERR-008, and {ENVELOPE_DEPTH} "
                            f"for the envelope): {excerpt(raw, 80)}")
    try:
        message = json.loads(text, object_pairs_hook=_unique_members,
                             parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"response is not valid JSON ({shorten(str(error))}): "
                            f"{excerpt(raw)}") from None
    if _SURROGATE_ESCAPE.search(raw) and has_lone_surrogate(message):
        raise ProtocolError("response is not valid JSON: a \\u escape names a lone surrogate "
                            f"(MS-ERR-007): {excerpt(raw)}")
    return message


def _too_deep(raw: bytes) -> bool:
    """Whether objects and arrays outside strings open deeper than RESPONSE_DEPTH: strings
    are removed, then the running count of brackets is taken, all in C loops."""
    if raw.count(b"[") + raw.count(b"{") <= RESPONSE_DEPTH:
        return False
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0) > RESPONSE_DEPTH


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {excerpt(key)}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


# --- stderr -----------------------------------------------------------------------------------

def _to_stderr(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text)
        sys.stderr.flush()


class StderrSink:
    """An adapter's stderr, drained as it comes so the adapter never blocks on it: the first
    `shown` bytes of a run go to `echo` (the terminal), then one notice, then nothing; the last
    STDERR_TAIL bytes are kept so a case that errors can carry what the adapter said."""

    def __init__(self, shown: int, echo: Callable[[str], None] | None = None) -> None:
        self.shown = shown
        self.total = 0
        self._echo = echo or _to_stderr
        self._tail = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._noted = False

    def feed(self, data: bytes) -> None:
        before = self.total
        self.total += len(data)
        if before < self.shown:
            self._echo(self._decoder.decode(data[:self.shown - before]))
        if self.total > self.shown > 0 and not self._noted:
            self._noted = True
            self._echo(f"\nmeterspec conformance: adapter stderr: {size_text(self.shown)} shown;"
                       " the rest is not (--max-stderr); an errored case keeps what the adapter"
                       " wrote while it ran in --report\n")
        self._tail += data
        if len(self._tail) > 2 * STDERR_TAIL:
            del self._tail[:-STDERR_TAIL]

    def since(self, mark: int) -> str:
        """What was written after the first `mark` bytes: its last STDERR_TAIL bytes."""
        count = min(self.total - mark, STDERR_TAIL, len(self._tail))
        if count <= 0:
            return ""
        return self._tail[len(self._tail) - count:].decode("utf-8", "replace")


# --- adapters ---------------------------------------------------------------------------------

class Adapter(Protocol):
    """One implementation under test. `deadline` is the run's (time.monotonic()), if any."""

    def start(self, deadline: float | None = None) -> Any:
        """Start it; the parsed answer to `start`."""

    def exchange(self, message: dict[str, Any], deadline: float | None = None) -> Any:
        """Send one request, return the parsed response; ProtocolError if there is none,
        DeadlineError if the run's deadline came first."""

    def restart_needed(self) -> bool:
        """Whether the adapter must be started again before the next case."""

    def discard(self) -> None:
        """Drop a running adapter that broke the protocol."""

    def stop(self) -> None:
        """Stop it."""


class InProcessAdapter:
    """The reference, called directly: `--impl python:meterspec`; or another module with the
    reference adapter's implementation() and handle() (an engine, meterspec.engines)."""

    def __init__(self, module: Any = reference) -> None:
        self.module = module

    def start(self, deadline: float | None = None) -> Any:
        return {"ready": True, "implementation": self.module.implementation()}

    def exchange(self, message: dict[str, Any], deadline: float | None = None) -> Any:
        response = {"seq": message["seq"], **self.module.handle(message["case"])}
        # What a pipe would carry, read as a subprocess adapter's answer is.
        return parse_response(json.dumps(response, ensure_ascii=False).encode())

    def restart_needed(self) -> bool:
        return False

    def discard(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _TimeUpError(Exception):
    """An exchange's time ran out (the case's timeout or the run's deadline)."""


class _Child:
    """One adapter process and the harness's ends of its pipes, which are non-blocking and
    only ever read or written through a selector with a deadline (POSIX)."""

    def __init__(self, argv: list[str], sink: StderrSink) -> None:
        self.cookie = secrets.token_hex(16)
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0, start_new_session=True, env={**os.environ, COOKIE: self.cookie})
        stdin, stdout, stderr = self.process.stdin, self.process.stdout, self.process.stderr
        assert stdin is not None and stdout is not None and stderr is not None
        self.inp, self.out, self.err = stdin.fileno(), stdout.fileno(), stderr.fileno()
        self.inodes = {os.fstat(fd).st_ino for fd in (self.inp, self.out, self.err)}
        for fd in (self.inp, self.out, self.err):
            os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.out, selectors.EVENT_READ)
        self.selector.register(self.err, selectors.EVENT_READ)
        self.reading = {self.out, self.err}
        self.buffer = bytearray()  # stdout read but not yet taken as a response
        self.sink = sink
        self.killed = False

    def exited(self) -> int | None:
        """The exit status (minus the signal, if killed by one) once the process has ended,
        without reaping it: its pid cannot be reused before the tree is killed."""
        if self.process.returncode is not None or not hasattr(os, "waitid"):
            return self.process.poll()
        try:
            info = os.waitid(os.P_PID, self.process.pid,
                             os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.process.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def _read(self, fd: int) -> None:
        """One read from stdout (into the buffer) or stderr (into the sink)."""
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(fd)
            self.reading.discard(fd)
        elif fd == self.out:
            self.buffer += data
        else:
            self.sink.feed(data)

    def _wait(self, end: float) -> None:
        """Read whatever comes on stdout and stderr for a moment; _TimeUpError after `end`."""
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise _TimeUpError
        for key, _ in self.selector.select(min(remaining, POLL)):
            if key.fd in self.reading:
                self._read(key.fd)

    def drain(self, limit: int) -> None:
        """Read what is already there, without waiting (stdout up to about `limit` bytes)."""
        for fd in (self.err, self.out):
            for _ in range(limit // CHUNK + 2):
                if fd not in self.reading or (fd == self.out and len(self.buffer) > limit):
                    break
                before = (len(self.buffer), self.sink.total)
                self._read(fd)
                if (len(self.buffer), self.sink.total) == before:
                    break

    def send(self, data: bytes, end: float, limit: int) -> None:
        """Write one request, draining stdout and stderr meanwhile (an adapter that writes
        before it reads must not deadlock the harness); stop early if the adapter exits or
        stops reading for good (reading the response then says what happened)."""
        view = memoryview(data)
        self.selector.register(self.inp, selectors.EVENT_WRITE)
        try:
            while view:
                try:
                    view = view[os.write(self.inp, view[:CHUNK]):]
                    continue
                except BlockingIOError:
                    pass
                except OSError:  # it closed stdin or died
                    return
                if len(self.buffer) > limit:
                    raise ProtocolError(f"output longer than {size_text(limit)} "
                                        "(--max-response) before the request was read: "
                                        f"{excerpt(bytes(self.buffer[:200]))}")
                if self.exited() is not None:
                    return
                self._wait(end)
        finally:
            self.selector.unregister(self.inp)

    def read_line(self, end: float, limit: int) -> bytes:
        """The next non-blank line on stdout, at most `limit` bytes; ProtocolError if the
        adapter goes away or writes too much, _TimeUpError at `end`."""
        scanned = skipped = 0
        final = False
        while True:
            content = _CONTENT.search(self.buffer)  # scans the leading blanks only
            blank = len(self.buffer) if content is None else content.start()
            if blank:
                del self.buffer[:blank]
                skipped += blank
                scanned = 0
            if skipped > limit:
                raise ProtocolError(f"{size_text(limit)} of blank lines and no response "
                                    "(--max-response)")
            newline = self.buffer.find(b"\n", scanned)
            if 0 <= newline <= limit:
                line = bytes(self.buffer[:newline])
                del self.buffer[:newline + 1]
                return line
            if newline > limit or len(self.buffer) > limit:
                raise ProtocolError(f"response line longer than {size_text(limit)} "
                                    f"(--max-response): {excerpt(bytes(self.buffer[:200]))}")
            scanned = len(self.buffer)
            if self.out not in self.reading and self.buffer:
                line = bytes(self.buffer)  # its last line, without a newline: taken as is
                self.buffer.clear()
                return line
            if self.out not in self.reading or self.exited() is not None:
                if final:
                    raise ProtocolError(self._gone(end))
                final = True  # all it wrote is in the pipe now: read that, then give up
                self.drain(limit)
                continue
            self._wait(end)

    def _gone(self, end: float) -> str:
        """Why no response will come: it exited, or it closed stdout but lives on."""
        wait_until = min(end, time.monotonic() + EXIT_WAIT)
        status = self.exited()
        while status is None and time.monotonic() < wait_until:
            time.sleep(POLL / 5)
            status = self.exited()
        if status is None:
            return "adapter closed its stdout without responding"
        if status < 0:
            with contextlib.suppress(ValueError):
                return (f"adapter was killed by signal {-status} "
                        f"({signal.Signals(-status).name}) without responding")
        return f"adapter exited (status {status}) without responding"

    def pending(self) -> bytes:
        """Output the adapter wrote after its last response, before any request for it."""
        return bytes(self.buffer).strip()

    def finish(self, grace: float, stop: bytes) -> None:
        """Ask the adapter to stop, give it `grace` seconds to exit, then kill what is left."""
        with contextlib.suppress(OSError):
            os.write(self.inp, stop)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # end of input: it should exit now
        end = time.monotonic() + grace
        with contextlib.suppress(_TimeUpError):
            while self.exited() is None:
                self._wait(end)
                self.buffer.clear()  # nothing more is expected on stdout
        self.kill()

    def kill(self) -> None:
        """Kill the adapter with every process it started (its session, its descendants,
        and anything still holding its pipes or carrying its cookie), close the harness's
        ends of the pipes, and reap it."""
        if self.killed:
            return
        self.killed = True
        with contextlib.suppress(OSError):
            self.drain(0)  # what it said on stderr just before
        kill_tree(self.process.pid, self.inodes, self.cookie)
        self.selector.close()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_GRACE)


class SubprocessAdapter:
    """A program speaking the protocol on stdin/stdout; its stderr is drained, shown up to
    `stderr_shown` bytes per run, and kept for errored cases. Each exchange has a deadline;
    an adapter that breaks the protocol or misses one is killed with its process tree."""

    def __init__(self, argv: list[str], timeout: float, *,
                 max_response: int = DEFAULT_MAX_RESPONSE,
                 stderr_shown: int = DEFAULT_STDERR_SHOWN,
                 echo: Callable[[str], None] | None = None) -> None:
        self.argv = argv
        self.timeout = timeout
        self.max_response = max_response
        self.sink = StderrSink(stderr_shown, echo)
        self._child: _Child | None = None

    def start(self, deadline: float | None = None) -> Any:
        self.discard()
        try:
            self._child = _Child(self.argv, self.sink)
        except OSError as error:
            raise HarnessError(f"cannot start adapter {self.argv[0]!r}: "
                               f"{error.strerror or error}") from None
        return self._exchange(START, max(self.timeout, START_TIMEOUT), deadline)

    def restart_needed(self) -> bool:
        return self._child is None or self._child.exited() is not None

    def exchange(self, message: dict[str, Any], deadline: float | None = None) -> Any:
        return self._exchange(message, self.timeout, deadline)

    def _exchange(self, message: dict[str, Any], timeout: float,
                  deadline: float | None) -> Any:
        child = self._child
        if child is None:
            raise ProtocolError("adapter is not running")
        end = time.monotonic() + timeout
        cut = end if deadline is None else min(end, deadline)
        child.drain(self.max_response)
        mark = self.sink.total
        try:
            extra = child.pending()
            if extra:
                raise ProtocolError("the adapter wrote output nobody asked for before this "
                                    f"request: {excerpt(extra)}")
            data = json.dumps(message, ensure_ascii=False).encode() + b"\n"
            child.send(data, cut, self.max_response)
            return parse_response(child.read_line(cut, self.max_response))
        except _TimeUpError:
            self.discard()
            if cut < end:
                raise DeadlineError from None
            raise ProtocolError(f"no response within {timeout:g} s",
                                self.sink.since(mark)) from None
        except ProtocolError as error:
            self.discard()
            error.stderr = self.sink.since(mark)
            raise

    def discard(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()

    def stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.finish(min(STOP_GRACE, self.timeout),
                         json.dumps(STOP).encode() + b"\n")


# --- killing a process tree -------------------------------------------------------------------

def kill_tree(pid: int, inodes: set[int], cookie: str) -> None:
    """SIGKILL the adapter `pid` and everything it started. Its process group goes first
    (start_new_session made it the group leader); where /proc exists, so do its descendants
    (found before anything dies, while each still has its parent), then, until none is left,
    any process holding one of the adapter's pipes (`inodes`) or whose environment carries
    `cookie`: a setsid() or double-forked child lives in another session, and once its parent
    dies it is no one's descendant."""
    victims = _descendants(pid) if PROC.is_dir() else set()
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    for victim in (pid, *victims):
        with contextlib.suppress(OSError):
            os.kill(victim, signal.SIGKILL)
    if not PROC.is_dir():
        return
    marker = f"{COOKIE}={cookie}".encode()
    for _ in range(KILL_ROUNDS):
        holders = _holders(inodes, marker)
        if not holders:
            return
        for victim in holders:
            with contextlib.suppress(OSError):
                os.kill(victim, signal.SIGKILL)
        time.sleep(POLL / 5)


def _processes() -> Iterator[Path]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            yield entry


def _parent(entry: Path) -> int | None:
    """The parent pid of /proc/<pid> (after the command name, which may hold anything)."""
    fields = (entry / "stat").read_bytes().rsplit(b")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else None


def _descendants(pid: int) -> set[int]:
    children: dict[int | None, list[int]] = {}
    for entry in _processes():
        try:
            children.setdefault(_parent(entry), []).append(int(entry.name))
        except OSError:
            continue
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _holders(inodes: set[int], marker: bytes) -> set[int]:
    """Processes (of this user: others' are unreadable) holding one of the pipes or whose
    environment carries the marker; a zombie has neither. Never this process, nor a child of
    it: another adapter being started (by another thread) holds copies of every pipe from its
    fork to its exec, and this adapter itself has been killed already."""
    links = {f"pipe:[{inode}]" for inode in inodes}
    found: set[int] = set()
    me = os.getpid()
    for entry in _processes():
        try:
            if int(entry.name) == me or _parent(entry) == me:
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
                continue
            fds = entry / "fd"
            for fd in os.listdir(fds):
                with contextlib.suppress(OSError):
                    if os.readlink(fds / fd) in links:
                        found.add(int(entry.name))
                        break
        except OSError:
            continue
    return found
