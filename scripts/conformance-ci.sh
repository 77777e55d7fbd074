#!/usr/bin/env bash
# Run the meterspec conformance suite against an implementation and write its reports and
# badge: what action.yml runs, usable as it is in any other CI or in the Docker image.
#
#   METERSPEC_ADAPTER  the adapter's command line (conformance/ADAPTERS.md), or
#   METERSPEC_URL      the implementation's HTTP base URL (with METERSPEC_API_KEY if it needs one)
#   METERSPEC_ARGS     more arguments for `meterspec conformance run`, split on spaces
#                      (e.g. "--area aggregation --allow-skips")
#   METERSPEC_OUT      the folder for report.jsonl, report.md and badge.svg (conformance-report)
#   METERSPEC          the meterspec command (meterspec)
#
# Exit status: the run's (0 every selected case passed, 1 not, 2 the harness could not run).
# The reports and the badge are written whatever the verdict, so a failed run can be read.
set -euo pipefail
meterspec="${METERSPEC:-meterspec}"
out="${METERSPEC_OUT:-conformance-report}"
if [[ -n "${METERSPEC_ADAPTER:-}" ]]; then
    target=(--impl "$METERSPEC_ADAPTER")
elif [[ -n "${METERSPEC_URL:-}" ]]; then
    target=(--http "$METERSPEC_URL")
    if [[ -n "${METERSPEC_API_KEY:-}" ]]; then target+=(--api-key "$METERSPEC_API_KEY"); fi
else
    echo "meterspec conformance: give an adapter command (adapter) or an HTTP URL (url)" >&2
    exit 2
fi
extra=()
if [[ -n "${METERSPEC_ARGS:-}" ]]; then read -r -a extra <<< "$METERSPEC_ARGS"; fi
mkdir -p "$out"
status=0
"$meterspec" conformance run "${target[@]}" --report "$out/report.jsonl" \
    --markdown "$out/report.md" "${extra[@]}" || status=$?
if [[ -s "$out/report.jsonl" ]]; then
    "$meterspec" conformance badge "$out/report.jsonl" > "$out/badge.svg"
fi
if [[ -n "${GITHUB_STEP_SUMMARY:-}" && -s "$out/report.md" ]]; then
    cat "$out/report.md" >> "$GITHUB_STEP_SUMMARY"
fi
exit "$status"
