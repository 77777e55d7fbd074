"""The harness protocol (INTERPRETING.md 5): message checks and the two kinds of adapter,
a subprocess speaking JSON lines and the reference called in-process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from typing import IO, Any, Protocol

from jsonschema.exceptions import best_match

from meterspec.conformance import adapter as reference
from meterspec.conformance.data import HarnessError, loads, validator

START: dict[str, Any] = {"cmd": "start", "version": 1}
STOP: dict[str, Any] = {"cmd": "stop"}
STOP_GRACE = 5.0
START_TIMEOUT = 30.0  # at least: an adapter's runtime may be slow to start, not to answer


class ProtocolError(Exception):
    """The adapter broke the protocol: the case is errored and the adapter restarted."""


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
        return f"response carries seq {message.get('seq')!r}, expected {seq}"
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


class Adapter(Protocol):
    """One implementation under test."""

    def start(self) -> Any:
        """Start it; the parsed answer to `start`."""

    def exchange(self, message: dict[str, Any]) -> Any:
        """Send one request, return the parsed response; ProtocolError if there is none."""

    def restart_needed(self) -> bool:
        """Whether the adapter must be started again before the next case."""

    def discard(self) -> None:
        """Drop a running adapter that broke the protocol."""

    def stop(self) -> None:
        """Stop it."""


class InProcessAdapter:
    """The reference, called directly: `--impl python:meterspec`."""

    def start(self) -> Any:
        return {"ready": True, "implementation": reference.implementation()}

    def exchange(self, message: dict[str, Any]) -> Any:
        response = {"seq": message["seq"], **reference.handle(message["case"])}
        return loads(json.dumps(response, ensure_ascii=False))  # what a pipe would carry

    def restart_needed(self) -> bool:
        return False

    def discard(self) -> None:
        pass

    def stop(self) -> None:
        pass


class SubprocessAdapter:
    """A program speaking the protocol on stdin/stdout; stderr passes through to the user.
    Each exchange has a deadline; at the deadline the adapter's process group is killed."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self.argv = argv
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Any:
        try:
            self._process = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                start_new_session=os.name == "posix")
        except OSError as error:
            raise HarnessError(f"cannot start adapter {self.argv[0]!r}: "
                               f"{error.strerror or error}") from None
        return self.exchange(START, max(self.timeout, START_TIMEOUT))

    def restart_needed(self) -> bool:
        return self._process is None or self._process.poll() is not None

    def exchange(self, message: dict[str, Any], timeout: float | None = None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        process = self._process
        if process is None:
            raise ProtocolError("adapter is not running")
        stdin, stdout = _pipes(process)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self._kill(process)

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            try:
                stdin.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
                stdin.flush()
            except OSError:
                pass  # it died; reading says how
            line = stdout.readline()
            while line and not line.strip():  # tolerate blank lines
                line = stdout.readline()
        finally:
            timer.cancel()
        if expired.is_set():
            self.discard()
            raise ProtocolError(f"no response within {timeout:g} s")
        if not line:
            status = process.wait()
            self.discard()
            raise ProtocolError(f"adapter exited (status {status}) without responding")
        try:
            return loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            self.discard()
            raise ProtocolError("response is not UTF-8") from None
        except ValueError as error:
            self.discard()
            shown = line.decode("utf-8", "replace").rstrip("\n")
            shown = shown if len(shown) <= 200 else shown[:200] + "..."
            raise ProtocolError(f"response is not valid JSON ({error}): {shown!r}") from None

    def discard(self) -> None:
        if self._process is not None:
            self._kill(self._process)
            self._close(self._process)
            self._process = None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        stdin, _ = _pipes(process)
        try:
            stdin.write(json.dumps(STOP).encode() + b"\n")
            stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=min(STOP_GRACE, self.timeout))
        except subprocess.TimeoutExpired:
            self._kill(process)
        self._close(process)

    @staticmethod
    def _kill(process: subprocess.Popen[bytes]) -> None:
        """Kill the adapter and anything it started (a wrapper script's children would
        otherwise keep the pipes open)."""
        try:
            if os.name == "posix":
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _close(process: subprocess.Popen[bytes]) -> None:
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        process.wait()


def _pipes(process: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    assert process.stdin is not None and process.stdout is not None
    return process.stdin, process.stdout
