"""The suite in anyone's CI (issue 17): scripts/conformance-ci.sh runs `meterspec conformance
run` against an adapter command (or an HTTP URL) and writes the JSON-lines and Markdown reports
and the badge; action.yml runs it as a GitHub composite action; the Dockerfile packages it;
`meterspec conformance badge` makes the SVG from a report."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with mkdocs ([dev])
from server_helpers import Server, create_key, free_port, start

from meterspec.cli import main
from meterspec.conformance import http_profile, report
from meterspec.conformance.cases import load_cases, load_suite, select
from meterspec.conformance.data import default_root

ROOT = Path(__file__).resolve().parents[1]
CI_SCRIPT = ROOT / "scripts" / "conformance-ci.sh"
METERSPEC = Path(sys.executable).with_name("meterspec")
SVG = "{http://www.w3.org/2000/svg}"


def _ci(env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("METERSPEC", "GITHUB"))}
    return subprocess.run(["bash", str(CI_SCRIPT)], env={**clean, **env}, cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=timeout)


def _fake_meterspec(folder: Path) -> Path:
    """A `meterspec` that records its arguments, one per line, and fails a run with 1."""
    fake = folder / "fake-meterspec"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "$CALLS"; echo ---- >> '
                    '"$CALLS"\nif [[ "$2" == run ]]; then echo "{}" > "$6"; exit 1; fi\n')
    fake.chmod(0o755)
    return fake


def test_the_script_passes_an_adapter_or_a_url_through(tmp_path: Path) -> None:
    fake, calls = _fake_meterspec(tmp_path), tmp_path / "calls"
    env = {"METERSPEC": str(fake), "CALLS": str(calls), "METERSPEC_OUT": "out"}
    done = _ci({**env, "METERSPEC_ADAPTER": "node my adapter.js",
                "METERSPEC_ARGS": "--area aggregation --allow-skips"}, tmp_path)
    assert done.returncode == 1  # the run's status, after the badge was made
    assert calls.read_text().split("----\n")[:2] == [
        "conformance\nrun\n--impl\nnode my adapter.js\n--report\nout/report.jsonl\n--markdown\n"
        "out/report.md\n--area\naggregation\n--allow-skips\n",
        "conformance\nbadge\nout/report.jsonl\n"]
    calls.unlink()
    done = _ci({**env, "METERSPEC_URL": "https://meter.example.com", "METERSPEC_API_KEY": "k1"},
               tmp_path)
    # The key stays in the environment, where the harness reads it: not on a command line
    # that any user of the machine can list (ps, /proc/PID/cmdline).
    assert calls.read_text().split("----\n")[0] == (
        "conformance\nrun\n--http\nhttps://meter.example.com\n--report\n"
        "out/report.jsonl\n--markdown\nout/report.md\n")


def test_the_script_needs_an_adapter_or_a_url(tmp_path: Path) -> None:
    done = _ci({"METERSPEC": str(_fake_meterspec(tmp_path))}, tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("meterspec conformance: give an adapter command (adapter) or an HTTP "
                           "URL (url)\n")


def test_the_script_refuses_an_adapter_and_a_url(tmp_path: Path) -> None:
    """Both given is a mistake in the workflow: running one of them would hide it."""
    fake, calls = _fake_meterspec(tmp_path), tmp_path / "calls"
    done = _ci({"METERSPEC": str(fake), "CALLS": str(calls), "METERSPEC_ADAPTER": "node a.js",
                "METERSPEC_URL": "http://127.0.0.1:8080"}, tmp_path)
    assert (done.returncode, done.stderr) == (2, "meterspec conformance: give an adapter "
                                                 "command (adapter) or an HTTP URL (url), not "
                                                 "both\n")
    assert not calls.exists()


def test_the_script_runs_the_node_adapter_and_writes_reports_and_badge(tmp_path: Path) -> None:
    """A real adapter command over the protocol (node), else the reference in-process."""
    adapter = (f"node {ROOT / 'examples' / 'node-adapter' / 'adapter.js'}"
               if shutil.which("node") else "python:meterspec")
    summary = tmp_path / "summary.md"
    done = _ci({"METERSPEC": str(METERSPEC), "METERSPEC_ADAPTER": adapter,
                "METERSPEC_ARGS": "--area aggregation --feature sum --allow-skips",
                "GITHUB_STEP_SUMMARY": str(summary)}, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "conformance-report"
    lines = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    tally = lines[-1]["summary"]
    assert tally["total"] == len(lines) - 1 > 0 and tally["failed"] == tally["errored"] == 0
    assert summary.read_text() == (out / "report.md").read_text()
    texts = [t.text for t in ElementTree.parse(out / "badge.svg").iter(f"{SVG}text")]
    assert texts == [f"meterspec suite {lines[-1]['suite']['version']}",
                     f"{tally['passed']}/{tally['total']} passed"]


# ------------------------------------------------------------------ the HTTP form, for real

# Chosen by hand from the case files so that each of the profile's operations passes once or
# twice and each kind of case the binding cannot express is skipped once (ADAPTERS.md, "No
# adapter: the HTTP profile"): ing-001 two new events and ing-003 a conflict (ingest, one
# tenant, empty state), id-001 (meter), id-013 (aggregate); ing-005 has events of three
# tenants, ing-006 a starting seen state, cor-016 is apply-corrections: not claimed.
HTTP_CASES = {"ing-001": "passed", "ing-003": "passed", "id-001": "passed", "id-013": "passed",
              "ing-005": "skipped", "ing-006": "skipped", "cor-016": "skipped"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """`meterspec serve` on loopback with an admin key of its own tenant, for this module."""
    folder = tmp_path_factory.mktemp("served")
    store = f"duckdb:{folder / 'served.duckdb'}"
    key = create_key(store, "ci", "prod", "admin")
    server = start(store, folder)
    yield server, key
    server.stop()


def test_the_script_runs_a_served_implementation_and_writes_reports_and_badge(
        served: tuple[Server, str], tmp_path: Path) -> None:
    """What action.yml does with `url:` and `api-key:`; no --allow-skips in args: a --http
    run does not claim what the binding cannot express, so those skips do not fail it."""
    server, key = served
    summary = tmp_path / "summary.md"
    args = " ".join(f"--case {case}" for case in HTTP_CASES)
    done = _ci({"METERSPEC": str(METERSPEC), "METERSPEC_URL": server.url,
                "METERSPEC_API_KEY": key, "METERSPEC_ARGS": args,
                "GITHUB_STEP_SUMMARY": str(summary)}, tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.endswith("PASS: 4 of 7 cases passed (57.1%); 3 not claimed by the "
                                "implementation, allowed by --allow-skips\n")
    out = tmp_path / "conformance-report"
    lines = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]
    assert {line["id"]: line["result"] for line in lines[:-1]} == HTTP_CASES
    assert {line["id"] for line in lines[:-1] if line.get("claimed") is False} == {
        case for case, result in HTTP_CASES.items() if result == "skipped"}
    last = lines[-1]
    assert last["summary"] == {"passed": 4, "failed": 0, "skipped": 3, "errored": 0,
                               "total": 7}
    assert (last["notClaimed"], last["allowSkips"]) == (3, True)
    assert last["implementation"]["name"] == f"HTTP binding at {server.url}"
    markdown = (out / "report.md").read_text()
    assert "4 of 7 cases passed (57.1%); 3 not claimed by the implementation, allowed by " \
        "--allow-skips. Verdict: PASS." in markdown
    assert "| **total** | 4 | 0 | 3 | 0 | 57.1% |" in markdown
    assert summary.read_text() == markdown
    badge = ElementTree.parse(out / "badge.svg").getroot()
    assert [t.text for t in badge.iter(f"{SVG}text")] == [
        f"meterspec suite {last['suite']['version']}", "4/7 passed"]
    assert [r.get("fill") for r in badge.iter(f"{SVG}rect")][2] == "#1565c0"  # claimed: all


def test_a_url_where_nothing_listens_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """No traceback, no wait, and no report of an earlier run left to be uploaded as this
    one's (nor its badge, nor its summary)."""
    url = f"http://127.0.0.1:{free_port()}"  # bound and closed again: nothing listens
    out, summary = tmp_path / "conformance-report", tmp_path / "summary.md"
    out.mkdir()
    for name in ("report.jsonl", "report.md", "badge.svg"):
        (out / name).write_text("from an earlier run\n")
    done = _ci({"METERSPEC": str(METERSPEC), "METERSPEC_URL": url, "METERSPEC_API_KEY": "k",
                "METERSPEC_ARGS": "--area ingestion", "GITHUB_STEP_SUMMARY": str(summary)},
               tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout == ""
    assert re.fullmatch(f"meterspec conformance: {re.escape(url)}: cannot reach the server: "
                        r"[^\n]*Connection refused\n", done.stderr), done.stderr
    assert sorted(out.iterdir()) == [] and not summary.exists()


@pytest.mark.parametrize(("status", "body", "said"), [
    (404, "<html>\n<body>\n  Not Found\n</body>\n</html>\n",
     "GET /v1/key: 404 <html> <body> Not Found </body> </html>"),
    (200, "<html>a web page</html>", "GET /v1/key: not a key document (specs/http.md)"),
    (200, '{"scope": "admin"}', "GET /v1/key: not a key document (specs/http.md)"),
])
def test_a_url_that_is_not_a_meterspec_server_is_one_line(
        status: int, body: str, said: str) -> None:
    """A web server at the URL (a wrong port, a proxy's page): what it answered, on one line."""
    profile = http_profile.Profile("http://web", "k", 10, transport=httpx.MockTransport(
        lambda request: httpx.Response(status, text=body)))
    with pytest.raises(http_profile.AnswerError) as raised:
        profile.discover_tenant()
    assert str(raised.value) == said


def test_a_url_without_a_scheme_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "run", "--http", "127.0.0.1:8080", "--api-key", "k",
                 "--case", "ing-001"]) == 2
    assert capsys.readouterr().err == ("meterspec conformance: --http needs an http:// or "
                                       "https:// URL, not '127.0.0.1:8080'\n")


def test_the_action_and_the_image_install_what_the_http_form_needs() -> None:
    """httpx is no core dependency: a bare `pip install meterspec` cannot run --http."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"][
        "optional-dependencies"]
    assert any(re.match(r"httpx\b", requirement) for requirement in extras["http"])
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    install = next(step["run"] for step in action["runs"]["steps"]
                   if "pip install" in step.get("run", ""))
    assert '"${{ github.action_path }}[http]"' in install
    assert "/src/meterspec[http]" in (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_http_without_httpx_is_one_line() -> None:
    code = ("import sys; sys.modules['httpx'] = None; from meterspec.cli import main; "
            "raise SystemExit(main(['conformance', 'run', '--http', 'http://127.0.0.1:9', "
            "'--api-key', 'k', '--case', 'ing-001']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("meterspec conformance: --http needs httpx: pip install "
                           "'meterspec[http]'\n")


def test_the_http_form_keeps_the_run_s_deadline(tmp_path: Path) -> None:
    """--deadline bounds an HTTP run as it does an adapter's (INTERPRETING.md 6): the cases not
    run by then are skipped as not run (claimed: they fail the run), one the profile does not
    cover keeps its own reason. A server that takes 1 s per batch, a deadline of 0.5 s: ing-001
    is sent, ing-003 is not, cor-016 is not in the profile."""
    def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/key":
            return httpx.Response(200, json={"workspaceID": "w", "universeID": "u",
                                             "scope": "admin"})
        time.sleep(1.0)
        events = json.loads(request.content)
        return httpx.Response(200, json={"results": [{"index": n, "outcome": "accepted"}
                                                     for n in range(len(events))]})

    chosen = {c.id: c for c in select(load_cases(load_suite(default_root())),
                                      ids=["ing-001", "ing-003", "cor-016"])}
    cases = [chosen["ing-001"], chosen["ing-003"], chosen["cor-016"]]  # cor-016 after the cut
    seen: list[str] = []
    run = http_profile.run("http://slow", "k", cases, 30, progress=lambda o: seen.append(
        o.case.id), deadline=0.5, transport=httpx.MockTransport(slow))
    not_run = "not run: the run's deadline (0.5 s) passed"
    assert [(o.case.id, o.result, o.claimed, o.reason) for o in run.outcomes] == [
        ("ing-001", "passed", True, None), ("ing-003", "skipped", True, not_run),
        ("cor-016", "skipped", False, "not in the HTTP profile: operation 'apply-corrections' "
         "is not in the HTTP profile")]
    assert (run.interrupted, run.not_run, run.ok) == ("the run's deadline (0.5 s) passed", 1,
                                                      False)
    assert seen == ["ing-001", "ing-003", "cor-016"]


@pytest.mark.parametrize(("timeout", "deadline", "said"), [
    (0.5, None, "no answer within 0.5 s (--timeout)"),
    (30, 0.5, "no answer to GET /v1/key before the run's deadline (0.5 s)")])
def test_a_server_that_never_answers_is_left_in_bounded_time(
        timeout: float, deadline: float | None, said: str) -> None:
    """A port that accepts connections (the kernel's backlog) and never answers: the run
    gives up after --timeout, or at the deadline when it is nearer, not after 30 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        began = time.monotonic()
        with pytest.raises(http_profile.AnswerError) as raised:
            http_profile.run(f"http://127.0.0.1:{silent.getsockname()[1]}", "k", [], timeout,
                             deadline=deadline)
    assert str(raised.value) == said
    assert time.monotonic() - began < 10


def test_a_deadline_before_the_key_is_known_is_a_harness_error(
        served: tuple[Server, str], capsys: pytest.CaptureFixture[str]) -> None:
    server, key = served
    assert main(["conformance", "run", "--http", server.url, "--api-key", key, "--case",
                 "ing-001", "--deadline", "0.000001"]) == 2
    assert capsys.readouterr().err == (
        f"meterspec conformance: {server.url}: no answer to GET /v1/key before the run's "
        "deadline (1e-06 s)\n")


def test_the_http_form_shows_progress_on_a_terminal(
        served: tuple[Server, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, key = served
    monkeypatch.setattr(report.Progress, "wanted", staticmethod(lambda out: True))
    assert main(["conformance", "run", "--http", server.url, "--api-key", key, "--case",
                 "ing-001", "--case", "cor-016"]) == 0
    err = capsys.readouterr().err
    assert "2/2 cases, 1 passed, 0 failed, 0 errored, 1 skipped" in err
    assert err.endswith("\r\033[K")  # cleared before the tables


# ------------------------------------------------------------------ the badge

def _report(tmp_path: Path, tally: dict[str, int], not_claimed: int = 0) -> Path:
    path = tmp_path / "report.jsonl"
    summary = {"summary": {**tally, "total": sum(tally.values())},
               "implementation": {"name": "x"}, "notClaimed": not_claimed,
               "suite": {"version": "2.2.0", "sha256": "0" * 64, "source": "suite-v1.json"}}
    path.write_text('{"id": "agg-001", "result": "passed"}\n' + json.dumps(summary) + "\n")
    return path


@pytest.mark.parametrize(("tally", "not_claimed", "message", "color"), [
    ({"passed": 1174, "failed": 0, "skipped": 0, "errored": 0}, 0, "1174/1174 passed",
     "#2e7d32"),
    ({"passed": 365, "failed": 0, "skipped": 809, "errored": 0}, 809, "365/1174 passed",
     "#1565c0"),
    ({"passed": 600, "failed": 3, "skipped": 0, "errored": 1}, 0, "600/604 passed", "#b26a00"),
    ({"passed": 2, "failed": 3, "skipped": 0, "errored": 0}, 0, "2/5 passed", "#c62828"),
])
def test_the_badge_says_the_suite_and_the_count(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], tally: dict[str, int],
        not_claimed: int, message: str, color: str) -> None:
    assert main(["conformance", "badge", str(_report(tmp_path, tally, not_claimed))]) == 0
    svg = ElementTree.fromstring(capsys.readouterr().out)
    assert svg.get("aria-label") == f"meterspec suite 2.2.0: {message}"
    assert [t.text for t in svg.iter(f"{SVG}text")] == ["meterspec suite 2.2.0", message]
    assert [r.get("fill") for r in svg.iter(f"{SVG}rect")][1:] == ["#555", color]
    widths = [int(r.get("width", "0")) for r in svg.iter(f"{SVG}rect")]
    assert widths[0] == widths[1] + widths[2] == int(svg.get("width", "0"))


def test_a_badge_from_what_is_not_a_report(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.jsonl").write_text('{"id": "agg-001"}\n')
    assert main(["conformance", "badge", str(tmp_path / "x.jsonl")]) == 2
    assert capsys.readouterr().err == ("meterspec conformance: not a conformance report "
                                       "(conformance run --report FILE.jsonl): its last line "
                                       "has no summary\n")


def test_the_readme_embeds_the_badge() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "meterspec conformance badge report.jsonl > badge.svg" in readme
    assert "![meterspec conformance](badge.svg)" in readme


# ------------------------------------------------------------------ action.yml, Dockerfile

def test_the_action_runs_the_script_and_uploads_the_reports() -> None:
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    action = yaml.safe_load(text)
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    assert set(re.findall(r"inputs\.([a-z-]+)", text)) <= declared
    assert {"adapter", "url", "api-key", "args", "report-dir"} <= declared
    steps = action["runs"]["steps"]
    assert all("shell" in step for step in steps if "run" in step)
    run = next(step for step in steps if "conformance-ci.sh" in step.get("run", ""))
    script = CI_SCRIPT.read_text(encoding="utf-8")
    harness = (ROOT / "src" / "meterspec" / "conformance" / "command.py").read_text("utf-8")
    read = {*re.findall(r"\$\{?(METERSPEC_[A-Z_]+)", script),  # by the script, or the harness
            *re.findall(r"environ\.get\(\"(METERSPEC_[A-Z_]+)\"", harness)}
    assert set(run["env"]) <= read
    upload = next(step for step in steps if step.get("uses", "").startswith(
        "actions/upload-artifact@"))
    assert upload["with"]["path"] == "${{ inputs.report-dir }}"
    assert upload["if"].startswith("always()")  # a failed run's reports are uploaded too


def test_the_dockerfile_installs_the_command_and_the_script() -> None:
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    instructions = [line for line in lines if line and not line.startswith((" ", "#"))]
    assert instructions[0].startswith("FROM python:3.1")
    assert 'ENTRYPOINT ["meterspec"]' in instructions
    assert any("scripts/conformance-ci.sh" in line for line in lines)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ".venv" in ignored and ".git" in ignored
    docker = shutil.which("docker")
    daemon = docker is not None and subprocess.run(
        [docker, "info"], capture_output=True, check=False, timeout=30).returncode == 0
    if not daemon:
        pytest.skip("no Docker daemon here: the image is not built")
    subprocess.run([str(docker), "build", "-q", "-t", "meterspec-test", str(ROOT)], check=True,
                   timeout=900)
    done = subprocess.run([str(docker), "run", "--rm", "meterspec-test", "conformance", "check"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.stdout.endswith("no problems\n"), done.stdout + done.stderr
