"""The reference server (specs/http.md) over loopback: one real `meterspec serve` process with
a DuckDB store for the module, keys of two workspaces. Every expected answer is written by hand
from the spec (outcomes, counts, statuses, Retry-After seconds, sums)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import (
    MS,
    Server,
    bearer,
    create_key,
    event,
    ndjson,
    problem_document,
    start,
)

CONFIG = {"measurements": [{"unit": "calls", "quantity": "1", "eventTypes": ["usage"]},
                           {"unit": "tokens", "sourceProperty": "tokens",
                            "eventTypes": ["usage"]}]}
DAY = {"aggregation": "sum", "tumbling": {"size": "day", "start": "2024-01-01T00:00:00Z",
                                          "end": "2024-01-03T00:00:00Z"}}


class Env:
    def __init__(self, server: Server, keys: dict[str, str]) -> None:
        self.server, self.keys, self.url = server, keys, server.url

    def post(self, path: str, key: str | None, body: object = None, *,
             content: bytes | None = None, kind: str = "application/json",
             **params: Any) -> httpx.Response:
        headers = {"content-type": kind} | (bearer(self.keys[key]) if key else {})
        data = content if content is not None else json.dumps(body).encode()
        return httpx.post(self.url + path, content=data, headers=headers, params=params,
                          timeout=30)

    def get(self, path: str, key: str | None, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=bearer(self.keys[key]) if key else {},
                         params=params, timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("server")
    store = f"duckdb:{folder / 'usage.duckdb'}"
    keys = {f"{ws}-{scope}": create_key(store, ws, "prod", scope)
            for ws in ("acme", "beta") for scope in ("ingest", "read", "admin")}
    server = start(store, folder, "--body-timeout", "2")
    yield Env(server, keys)
    assert server.stop() in (0, -15), server.log.read_text()  # uvicorn re-raises SIGTERM


@pytest.fixture(scope="module")
def metered(env: Env) -> Env:
    """Meter m1 (events of type usage) in both workspaces; acme: e1 (3 tokens), e2 (4 tokens,
    c2), e3 (no tokens: missing-source-property), all on 2024-01-01; beta: b1 (100 tokens)."""
    for ws in ("acme", "beta"):
        response = httpx.put(f"{env.url}/v1/meters/m1", json=CONFIG,
                             headers=bearer(env.keys[f"{ws}-admin"]))
        assert response.status_code in (200, 201)
    body = [event("m-e1", kind="usage", tokens="3"),
            event("m-e2", subject="c2", kind="usage", tokens="4"), event("m-e3", kind="usage")]
    assert env.post("/v1/events", "acme-ingest", body).json()["accepted"] == 3
    beta = [event("m-b1", workspace="beta", kind="usage", tokens="100")]
    assert env.post("/v1/events", "beta-ingest", beta).json()["accepted"] == 1
    return env


def outcomes(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["outcome"] for r in response.json()["results"]]


# ------------------------------------------------------------------ MS-HTTP-002, -003

def test_a_batch_answers_one_outcome_per_event(env: Env) -> None:
    """MS-HTTP-003: accepted, duplicate, conflict, rejected, in batch order, with counts."""
    batch = [event("o1", n="1"), event("o1", n="1"), event("o1", n="2"),
             {"id": "o2", "workspaceID": "acme"}, event("o3", workspace="beta"),
             event("o4", universe="test")]
    response = env.post("/v1/events", "acme-ingest", batch)
    assert outcomes(response) == ["accepted", "duplicate", "conflict", "rejected", "rejected",
                                  "rejected"]
    document = response.json()
    assert (document["accepted"], document["duplicates"], document["conflicts"],
            document["late"], document["rejected"]) == (1, 1, 1, 0, 3)
    results = document["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4, 5]
    assert "problems" not in results[0] and "problems" not in results[1]
    assert [p["code"] for p in results[2]["problems"]] == ["event-conflict"]
    assert {p["path"] for p in results[3]["problems"]} >= {"/subject", "/time", "/type"}
    # MS-HTTP-011: another tenant's events are rejected, the batch goes on.
    assert [(p["code"], p["path"]) for p in results[4]["problems"]] == [
        ("wrong-tenant", "/workspaceID")]
    assert [(p["code"], p["path"]) for p in results[5]["problems"]] == [
        ("wrong-tenant", "/universeID")]
    again = env.post("/v1/events", "acme-ingest", batch[:1])
    assert outcomes(again) == ["duplicate"]


def test_every_media_type_of_the_binding(env: Env) -> None:
    """MS-HTTP-002: one object, NDJSON (blank lines skipped, a bad line rejected alone),
    CloudEvents structured and batched."""
    assert outcomes(env.post("/v1/events", "acme-ingest", event("t1"))) == ["accepted"]
    lines = ndjson([event("t2")]) + b"\n  \n{not json\n" + ndjson([event("t3")])
    response = env.post("/v1/events", "acme-ingest", content=lines,
                        kind="application/x-ndjson; charset=utf-8")
    assert outcomes(response) == ["accepted", "rejected", "accepted"]
    assert response.json()["results"][1]["problems"][0]["code"] == "invalid-json"
    cloud = {"specversion": "1.0", "id": "ce-1", "source": "/test", "type": "usage",
             "datacontenttype": "application/json", "data": event("t4")}
    assert outcomes(env.post("/v1/events", "acme-ingest", cloud,
                             kind="application/cloudevents+json")) == ["accepted"]
    broken = {**cloud, "specversion": "0.3", "data": event("t5")}
    response = env.post("/v1/events", "acme-ingest", [cloud, broken, {**cloud, "data":
                                                                      event("t6")}],
                        kind="application/cloudevents-batch+json")
    assert outcomes(response) == ["duplicate", "rejected", "accepted"]
    assert response.json()["results"][1]["problems"][0]["code"] == "unsupported-specversion"
    pretty = json.dumps([event("t7")], indent=2).encode()
    assert outcomes(env.post("/v1/events", "acme-ingest", content=pretty)) == ["accepted"]


# ------------------------------------------------------------------ hostile input, MS-HTTP-008

def test_wrong_content_type_is_415(env: Env) -> None:
    for kind in ("text/plain", "application/xml", ""):
        response = env.post("/v1/events", "acme-ingest", [event("h1")], kind=kind)
        problem_document(response, 415, "unsupported-media-type")


def test_a_batch_of_1001_events_is_refused_whole(env: Env) -> None:
    """MS-HTTP-002, MS-HTTP-008: 400 too-many-items, nothing stored; 1,000 are taken."""
    batch = [event(f"big-{n}") for n in range(1001)]
    document = problem_document(env.post("/v1/events", "acme-ingest", batch), 400,
                                "too-many-items")
    assert document["problems"][0]["path"] == ""
    response = env.post("/v1/events", "acme-ingest", content=ndjson(batch),
                        kind="application/x-ndjson")
    problem_document(response, 400, "too-many-items")
    assert env.post("/v1/events", "acme-ingest", batch[:1000]).json()["accepted"] == 1000


def test_malformed_json_is_400(env: Env) -> None:
    for body in (b"[{", b'{"id": ', b"\xff\xfe", b"[1, 2"):
        problem_document(env.post("/v1/events", "acme-ingest", content=body), 400,
                         "invalid-json")
    # The server is still up and a good batch goes through.
    assert outcomes(env.post("/v1/events", "acme-ingest", [event("after-bad")])) == [
        "accepted"]


def test_an_oversized_body_is_413(env: Env) -> None:
    body = b"[" + b" " * (8 * 1024 * 1024) + b"]"
    problem_document(env.post("/v1/events", "acme-ingest", content=body), 413,
                     "body-too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        for _ in range(9):
            yield b" " * (1024 * 1024)
    response = httpx.post(f"{env.url}/v1/events", content=chunks(), timeout=30,
                          headers={"content-type": "application/json"} |
                          bearer(env.keys["acme-ingest"]))
    problem_document(response, 413, "body-too-large")


def test_a_slow_body_is_408(env: Env) -> None:
    """The server was started with --body-timeout 2."""
    host, port = env.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     f"\r\nContent-Length: 100\r\nAuthorization: Bearer "
                     f"{env.keys['acme-ingest']}\r\n\r\n[".encode())
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after it
            answer += chunk
        assert time.monotonic() - started >= 1.5
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert b"request-timeout" in answer
    assert env.get("/v1/health", None).status_code == 200


def test_huge_headers_are_refused_and_the_server_stays_up(env: Env) -> None:
    """MS-HTTP-008: over 64 KiB of headers, 431 or 400 before any handler."""
    headers = {f"x-filler-{n}": "y" * 1000 for n in range(80)}
    try:
        response = httpx.get(f"{env.url}/v1/health", headers=headers, timeout=10)
        assert response.status_code in (400, 431)
    except httpx.RemoteProtocolError:
        pass  # the connection closed before an answer: refused too
    assert env.get("/v1/health", None).json() == {"status": "ok"}


# ------------------------------------------------------------------ keys, MS-HTTP-010

def test_keys_authenticate_and_scope(env: Env) -> None:
    problem_document(env.get("/v1/meters/m1", None), 401, "unauthorized")
    response = httpx.get(f"{env.url}/v1/meters/m1", headers={"Authorization": "Basic abc"})
    assert problem_document(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = env.keys["acme-read"][:-4] + "AAAA"
    response = httpx.get(f"{env.url}/v1/meters/m1", headers=bearer(wrong))
    problem_document(response, 401, "unauthorized")
    problem_document(env.post("/v1/events", "acme-read", [event("s1")]), 403, "forbidden")
    problem_document(env.get("/v1/meters/m1", "acme-ingest"), 403, "forbidden")
    response = httpx.put(f"{env.url}/v1/meters/m9", json=CONFIG,
                         headers=bearer(env.keys["acme-read"]))
    problem_document(response, 403, "forbidden")
    assert env.get("/v1/health", None).status_code == 200


def test_keys_are_stored_only_as_hashes(env: Env, tmp_path: Path) -> None:
    """MS-HTTP-010: the secret appears nowhere in the store's file."""
    arguments = [str(a) for a in env.server.process.args]  # type: ignore[union-attr]
    store = Path(arguments[arguments.index("--store") + 1].removeprefix("duckdb:"))
    data = b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))
    for key in env.keys.values():
        _, key_id, secret = key.split("_", 2)
        assert secret.encode() not in data
        assert key_id.encode() in data  # the key id is there, to find the row


# ------------------------------------------------------------------ meters, readings

def test_meters_put_and_get(env: Env) -> None:
    """MS-HTTP-005: 201 then 200, the config back, 422 for a bad one, 404 for none."""
    url = f"{env.url}/v1/meters/put-get"
    admin = bearer(env.keys["acme-admin"])
    assert httpx.put(url, json=CONFIG, headers=admin).status_code == 201
    assert httpx.put(url, json=CONFIG, headers=admin).status_code == 200
    assert env.get("/v1/meters/put-get", "acme-read").json() == CONFIG
    bad = {"measurements": [{"unit": "calls", "quantity": "one", "eventTypes": ["api"]}]}
    document = problem_document(httpx.put(url, json=bad, headers=admin), 422,
                                "invalid-quantity")
    assert document["problems"][0]["path"] == "/measurements/0/quantity"
    problem_document(env.get("/v1/meters/none", "acme-read"), 404, "not-found")


def test_readings_by_query_and_by_body(metered: Env) -> None:
    """MS-HTTP-001: acme's readings only; e3 has no tokens (missing-source-property)."""
    env = metered
    response = env.get("/v1/readings", "acme-read", meter="m1", request=json.dumps(DAY),
                       subject=["c1", "c2"])
    assert response.status_code == 200, response.text
    document = response.json()
    found = {(r["subject"], r["measurement"]["unit"], r["window"]["start"]):
             r["measurement"]["quantity"] for r in document["readings"] if r["recordCount"]}
    # c1 on 2024-01-01: m-e1 (1 call, 3 tokens; m-e3 is left out whole, as `run` leaves out
    # an event whose measurement fails, MS-MET-008); c2: m-e2 (1 call, 4 tokens).
    assert found == {("c1", "calls", "2024-01-01T00:00:00Z"): "1",
                     ("c1", "tokens", "2024-01-01T00:00:00Z"): "3",
                     ("c2", "calls", "2024-01-01T00:00:00Z"): "1",
                     ("c2", "tokens", "2024-01-01T00:00:00Z"): "4"}
    assert [(p["code"], p["eventID"]) for p in document["problems"]] == [
        ("missing-source-property", "m-e3")]
    body = env.post("/v1/readings", "acme-read", {"meter": "m1", "request": DAY,
                                                  "subjects": ["c1", "c2"]})
    assert body.json() == document
    only = env.get("/v1/readings", "acme-read", meter="m1", request=json.dumps(DAY),
                   subject="c2").json()
    assert {r["subject"] for r in only["readings"]} == {"c2"}
    bad = {"aggregation": "sum", "tumbling": {"size": "day", "start": "2024-01-01T00:00:00Z",
                                              "end": "2024-01-01T00:00:00Z"}}
    response = env.get("/v1/readings", "acme-read", meter="m1", request=json.dumps(bad))
    assert response.status_code == 422
    problem_document(env.get("/v1/readings", "acme-read", meter="m1", request="{"), 400,
                     "invalid-json")


# ------------------------------------------------------------------ quota, MS-HTTP-006

def _check(usage: str, **more: Any) -> dict[str, Any]:
    return {"workspaceID": "acme", "universeID": "prod", "subject": "c1", "unit": "calls",
            "usage": usage, "requested": "1", "now": "2024-01-30T23:59:58.5Z",
            "policy": {"limit": "10", "mode": "HARD", "period": {"size": "month"},
                       "maxStalenessSeconds": 60}} | more


def test_quota_statuses_and_retry_after(env: Env) -> None:
    allowed = env.post("/v1/quota/check", "acme-read", _check("5"))
    assert allowed.status_code == 200 and allowed.json()["decision"] == "allow"
    denied = env.post("/v1/quota/check", "acme-read", _check("10"))
    assert denied.status_code == 429 and denied.json()["reason"] == "limit-exceeded"
    # resetAt 2024-02-01T00:00:00Z is 1 day, 1.5 s after now: 86,402 whole seconds, rounded up.
    assert denied.headers["retry-after"] == "86402"
    stale = env.post("/v1/quota/check", "acme-read",
                     _check("1", usageAsOf="2024-01-30T00:00:00Z"))
    assert stale.status_code == 503 and stale.json()["reason"] == "stale-usage"
    assert "retry-after" not in stale.headers
    document = problem_document(env.post("/v1/quota/check", "acme-read", _check("x")), 422,
                                "invalid-quantity")
    assert document["problems"][0]["path"] == "/usage"


# ------------------------------------------------------------------ invoices and projections

REQUEST = {"workspaceID": "acme", "universeID": "prod", "at": "2024-01-15T00:00:00Z",
           "plans": [{"id": "p", "version": 1, "currency": "USD",
                      "effectiveFrom": "2023-01-01T00:00:00Z",
                      "charges": [{"id": "tok", "model": "per-unit", "unit": "tokens",
                                   "unitPrice": "0.5"}]}],
           "usage": {"tokens": {"aggregation": "sum"}},
           "subscriptions": [{"subject": "c1", "planID": "p",
                              "cycle": {"anchorDate": "2024-01-01", "timeZone": "UTC",
                                        "intervalMonths": 1}}]}


def test_invoices_and_projections(metered: Env) -> None:
    """c1 has 3 tokens in January at 0.5: 1.50 USD; beta's 100 tokens are not acme's."""
    env = metered
    response = env.post("/v1/invoices", "acme-read", REQUEST, meter="m1")
    assert response.status_code == 200, response.text
    [invoice] = response.json()
    assert (invoice["subject"], invoice["total"]) == ("c1", {"precise": "1.5",
                                                              "rounded": "1.5"})
    response = env.post("/v1/projections", "acme-read", REQUEST, meter="m1")
    assert response.status_code == 200, response.text
    [projection] = response.json()
    assert projection["subject"] == "c1"
    problem_document(env.post("/v1/invoices", "acme-read", REQUEST, meter="none"), 404,
                     "not-found")


# ------------------------------------------------------------------ isolation, MS-HTTP-011

def test_nothing_crosses_between_workspaces(metered: Env) -> None:
    env = metered
    # Meters: beta's m1 is beta's own; a meter only acme has is 404 for beta.
    assert env.get("/v1/meters/put-get", "beta-read").status_code == 404
    # Events: beta cannot write into acme, nor acme into beta.
    response = env.post("/v1/events", "beta-ingest", [event("x1", workspace="acme")])
    assert response.json()["results"][0]["problems"][0]["code"] == "wrong-tenant"
    # Readings: beta sees its 100 tokens and nothing of acme's.
    readings = env.get("/v1/readings", "beta-read", meter="m1", request=json.dumps(DAY)).json()
    assert {(r["workspaceID"], r["subject"]) for r in readings["readings"]} == {("beta", "c1")}
    tokens = [r["measurement"]["quantity"] for r in readings["readings"]
              if r["measurement"]["unit"] == "tokens" and r["recordCount"]]
    assert tokens == ["100"]
    assert readings["problems"] == []
    # Quota checks, invoices and projections naming acme: 403 for beta's key.
    problem_document(env.post("/v1/quota/check", "beta-read", _check("1")), 403,
                     "wrong-tenant")
    for path in ("/v1/invoices", "/v1/projections"):
        problem_document(env.post(path, "beta-read", REQUEST, meter="m1"), 403,
                         "wrong-tenant")
    beta = REQUEST | {"workspaceID": "beta"}
    [invoice] = env.post("/v1/invoices", "beta-read", beta, meter="m1").json()
    assert invoice["total"] == {"precise": "50", "rounded": "50"}  # 100 tokens at 0.5
    # The usage page of acme's subject, with beta's key, shows beta's usage only.
    page = env.get("/v1/usage/c2", "beta-read", meter="m1").text
    assert "No usage yet." in page


# ------------------------------------------------------------------ the rest

def test_unknown_paths_and_methods(env: Env) -> None:
    """MS-HTTP-009."""
    problem_document(env.get("/v1/nothing", "acme-read"), 404, "not-found")
    response = httpx.delete(f"{env.url}/v1/events", headers=bearer(env.keys["acme-admin"]))
    problem_document(response, 405, "method-not-allowed")


def test_usage_page(metered: Env, tmp_path: Path) -> None:
    """MS-HTTP-014: chart, table and quota status; rendered in headless Chromium where the
    machine has it (a screenshot, checked to be a PNG with content)."""
    env = metered
    policy = json.dumps({"limit": "2", "mode": "HARD", "period": {"size": "month"}})
    response = env.get("/v1/usage/c1", "acme-read", meter="m1", window="day", policy=policy,
                       invoices=json.dumps(REQUEST))
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/html")
    page = response.text
    assert "<svg" in page and page.count("<rect") >= 2
    assert "<td>2024-01-01T00:00:00Z</td><td>2024-01-02T00:00:00Z</td><td>calls</td><td>1</td>" \
        in page
    assert "<table id='quota'>" in page and "within-limit" in page  # this month: no usage
    # January's invoice: 3 tokens at 0.5 (REQUEST).
    assert "<td>2024-01-01T00:00:00Z</td><td>2024-02-01T00:00:00Z</td><td>USD</td><td>1.5</td>" \
        in page
    problem_document(env.get("/v1/usage/c1", "acme-ingest", meter="m1"), 403, "forbidden")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine: the page was checked as HTML only")
    html = tmp_path / "page.html"
    html.write_text(page)
    shot = tmp_path / "usage.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=900,700", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000


def test_a_store_in_use_is_refused_in_one_line(env: Env) -> None:
    """The module's server holds its DuckDB file: a second `serve` or `keys create` on it
    says so in one line and exits 2, no traceback."""
    arguments = [str(a) for a in env.server.process.args]  # type: ignore[union-attr]
    store = arguments[arguments.index("--store") + 1]
    for command in (["serve", "--store", store, "--port", "1"],
                    ["keys", "create", "--store", store, "--workspace", "w", "--universe",
                     "u", "--scope", "read"]):
        done = subprocess.run([*MS, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "another process has it open" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_core_works_without_the_server_extra(tmp_path: Path) -> None:
    """Starlette and uvicorn blocked: `import meterspec` and the CLI work, `serve` says which
    extra to install (one line, exit 2)."""
    script = ("import sys\n"
              "sys.modules['starlette'] = None\n"
              "sys.modules['uvicorn'] = None\n"
              "from meterspec.cli import main\n"
              f"sys.exit(main(['serve', '--store', 'duckdb:{tmp_path / 's.duckdb'}']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr == "meterspec serve: needs the server extra: pip install " \
        "'meterspec[server]'\n"
    help_text = subprocess.run([*MS, "--help"], capture_output=True, text=True, check=True)
    assert "serve" in help_text.stdout and "keys" in help_text.stdout


def test_a_slow_header_section_is_408(env: Env) -> None:
    """MS-HTTP-008 (slowloris): headers unfinished after the deadline (--body-timeout 2): 408
    and the connection closed; a connection that sends nothing is closed too."""
    host, port = env.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert 1.5 <= time.monotonic() - started < 15
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request-timeout" in answer
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        silent = b""
        while chunk := sock.recv(65536):
            silent += chunk
    assert silent.startswith(b"HTTP/1.1 408 ")
    assert env.get("/v1/health", None).status_code == 200
