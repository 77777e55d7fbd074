"""A real `meterspec serve` process on loopback for the server tests: a free port, keys made
with `meterspec keys create` before it starts, stopped with SIGTERM (SIGKILL if asked)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

MS = [sys.executable, "-m", "meterspec"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def create_key(store: str, workspace: str, universe: str, scope: str) -> str:
    done = subprocess.run([*MS, "keys", "create", "--store", store, "--workspace", workspace,
                           "--universe", universe, "--scope", scope],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=60)


def start(store: str, folder: Path, *options: str) -> Server:
    """`meterspec serve` on a free loopback port, once its health endpoint answers."""
    port = free_port()
    log = folder / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([*MS, "serve", "--store", store, "--port", str(port),
                                    *options], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"meterspec serve exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                return Server(process, url, log)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"meterspec serve did not start: {log.read_text()}")


def event(ident: str, workspace: str = "acme", universe: str = "prod", subject: str = "c1",
          time_: str = "2024-01-01T10:00:00Z", kind: str = "api", **properties: str
          ) -> dict[str, Any]:
    return {"id": ident, "workspaceID": workspace, "universeID": universe, "type": kind,
            "subject": subject, "time": time_, "properties": properties}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def problem_document(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """MS-HTTP-007: an RFC 9457 document of this status whose problems include `code`."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    assert document["status"] == status
    assert {"type", "title", "detail", "problems"} <= set(document)
    assert document["problems"], document
    for found in document["problems"]:
        assert {"code", "path", "message", "requirement"} <= set(found)
    assert code in [p["code"] for p in document["problems"]], document
    return document


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)
