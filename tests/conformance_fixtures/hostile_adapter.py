"""A hostile or broken conformance adapter, to prove the harness survives one (no traceback, no
hang, bounded memory and output) and says what went wrong, case by case.

    python tests/conformance_fixtures/hostile_adapter.py MODE_JSON

MODE_JSON is {"start": BEHAVIOUR?, "cases": {case id: BEHAVIOUR}, "pids": FILE?, "log": FILE?}.
`start` misbehaves in answer to `start`; each case id misbehaves in answer to its `run`; every
other case is answered `{"output": []}`. Processes the adapter leaves behind (setsid children,
daemons) append their pid to `pids`, so a test can check they were killed (and kill them if
not); each `start` appends a line to `log`, so a test can count restarts. It imports nothing
from meterspec: a restart costs a Python start-up and no more.
"""

from __future__ import annotations

import json
import os
import sys
import time

MODE = json.loads(sys.argv[1])
OUT = sys.stdout.buffer
FOREVER = 600.0
MIB = 1 << 20


def send(data: bytes) -> None:
    OUT.write(data)
    OUT.flush()


def answer(seq: object, **body: object) -> None:
    send(json.dumps({"seq": seq, **body}).encode() + b"\n")


def spawn(daemon: bool) -> None:
    """A child in a session of its own (out of the adapter's process group), which sleeps
    holding stdout and stderr open, or, as a daemon, with its stdio on /dev/null. Returns
    once the child has recorded its pid (else a harness quick to kill could beat it)."""
    ready, recorded = os.pipe()
    pid = os.fork()
    if pid:
        os.close(recorded)
        os.read(ready, 1)
        os.close(ready)
        return
    os.close(ready)
    os.setsid()
    if daemon:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    with open(MODE["pids"], "a") as pids:
        pids.write(f"{os.getpid()}\n")
    os.write(recorded, b"x")
    os.close(recorded)
    time.sleep(FOREVER)
    os._exit(0)


def flood(data: bytes, stream: int = 1) -> None:
    """Write data forever, as `cat /dev/zero` does (until the reader goes away)."""
    chunk = data * (MIB // len(data))
    while True:
        os.write(stream, chunk)


def run_behaviour(name: str, seq: int) -> None:
    """Misbehave as `name` says in answer to the run request numbered seq."""
    head = b'{"seq": %d, ' % seq
    if name == "deep-array":
        send(b"[" * 100_000 + b"\n")
    elif name == "deep-object":
        send(b'{"a":' * 100_000 + b"\n")
    elif name == "deep-string":  # valid: all its brackets are inside a string
        answer(seq, errored="[" * 100_000)
    elif name == "depth-80":  # the object, the output array, 78 arrays: the most accepted
        send(head + b'"output": ' + b"[" * 79 + b"]" * 79 + b"}\n")
    elif name == "depth-81":
        send(head + b'"output": ' + b"[" * 80 + b"]" * 80 + b"}\n")
    elif name == "zero-flood":
        flood(b"\0")
    elif name == "blank-flood":
        flood(b"\n")
    elif name == "long-line":
        send(head + b'"errored": "' + b"x" * (20 * MIB) + b'"}\n')
    elif name == "extra-lines":
        send(head + b'"output": []}\n' + b'{"unasked": true}\n' * 100_000)
    elif name == "stderr-flood":
        os.write(2, b"e" * (50 * MIB))
        answer(seq, output=[])
    elif name == "stderr-crash":
        os.write(2, b"Traceback: something broke\n")
        sys.exit(4)
    elif name == "setsid-hang":
        spawn(daemon=False)
        time.sleep(FOREVER)
    elif name == "setsid-exit":
        spawn(daemon=False)
        os._exit(0)
    elif name == "daemon":
        spawn(daemon=True)
        answer(seq, output=[])
    elif name == "close-stdout":
        os.close(1)
        time.sleep(FOREVER)
    elif name == "bad-utf8":
        send(head + b'"errored": "\xff\xfe"}\n')
    elif name == "surrogate":
        send(head + b'"errored": "\\ud800"}\n')
    elif name == "infinite-number":
        send(head + b'"output": [1e999]}\n')
    elif name == "huge-integer":
        send(head + b'"output": [' + b"9" * 10_000 + b"]}\n")
    elif name == "wrong-shape":
        send(head + b'"error": [{"code": 1, "path": ""}]}\n')
    elif name == "not-object":
        send(b'"just a string"\n')
    elif name == "long-output":  # wrong, and a diff of some 1000 lines
        answer(seq, output=[f"item {i}" for i in range(1000)])
    elif name == "huge-output":  # wrong, and 3 MiB of JSON
        answer(seq, output=[f"item {i}" for i in range(300_000)])
    elif name == "huge-seq":
        answer("s" * 100_000, output=[])
    else:
        raise ValueError(f"unknown behaviour {name!r}")


def start_behaviour(name: str) -> None:
    """Misbehave as `name` says in answer to start."""
    if name == "never":
        time.sleep(FOREVER)
    elif name == "deep":
        send(b"[" * 100_000 + b"\n")
    elif name == "zero-flood":
        flood(b"\0")
    elif name == "not-ready":
        send(b'{"ready": false}\n')
    elif name == "deaf":  # answers, then never reads again: a large request fills the pipe
        ready()
        time.sleep(FOREVER)
    else:
        raise ValueError(f"unknown start behaviour {name!r}")


def ready() -> None:
    info = {"name": "hostile", "version": "1", "language": "python", "operations": ["meter"]}
    send(json.dumps({"ready": True, "implementation": info}).encode() + b"\n")


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        if message["cmd"] == "stop":
            return 0
        if message["cmd"] == "start":
            if "log" in MODE:
                with open(MODE["log"], "a") as log:
                    log.write("start\n")
            if "start" in MODE:
                start_behaviour(MODE["start"])
            else:
                ready()
            continue
        seq, case_id = int(message["seq"]), message["case"]["id"]
        behaviour = MODE.get("cases", {}).get(case_id)
        if behaviour is None:
            answer(seq, output=[])
        else:
            run_behaviour(behaviour, seq)
    return 0


if __name__ == "__main__":
    sys.exit(main())
