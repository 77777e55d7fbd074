"""The suite in anyone's CI (issue 17): scripts/conformance-ci.sh runs `meterspec conformance
run` against an adapter command (or an HTTP URL) and writes the JSON-lines and Markdown reports
and the badge; action.yml runs it as a GitHub composite action; the Dockerfile packages it;
`meterspec conformance badge` makes the SVG from a report."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with mkdocs ([dev])

from meterspec.cli import main

ROOT = Path(__file__).resolve().parents[1]
CI_SCRIPT = ROOT / "scripts" / "conformance-ci.sh"
METERSPEC = Path(sys.executable).with_name("meterspec")
SVG = "{http://www.w3.org/2000/svg}"


def _ci(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("METERSPEC", "GITHUB"))}
    return subprocess.run(["bash", str(CI_SCRIPT)], env={**clean, **env}, cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=300)


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
    assert calls.read_text().split("----\n")[0] == (
        "conformance\nrun\n--http\nhttps://meter.example.com\n--api-key\nk1\n--report\n"
        "out/report.jsonl\n--markdown\nout/report.md\n")


def test_the_script_needs_an_adapter_or_a_url(tmp_path: Path) -> None:
    done = _ci({"METERSPEC": str(_fake_meterspec(tmp_path))}, tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("meterspec conformance: give an adapter command (adapter) or an HTTP "
                           "URL (url)\n")


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
    assert set(run["env"]) <= set(re.findall(r"\$\{?(METERSPEC_[A-Z_]+)", script))
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
