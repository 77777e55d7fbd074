#!/usr/bin/env bash
# Run the meterspec conformance suite against an implementation and write its reports and
# badge: what action.yml runs, usable as it is in any other CI or in the Docker image.
#
#   METERSPEC_ADAPTER  the adapter's command line (conformance/ADAPTERS.md), or (not both)
#   METERSPEC_URL      the implementation's HTTP base URL, with METERSPEC_API_KEY (an admin
#                      key of a tenant that holds nothing else: conformance/ADAPTERS.md)
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
if [[ -n "${METERSPEC_ADAPTER:-}" && -n "${METERSPEC_URL:-}" ]]; then
    echo "meterspec conformance: give an adapter command (adapter) or an HTTP URL (url), not" \
        "both" >&2
    exit 2
elif [[ -n "${METERSPEC_ADAPTER:-}" ]]; then
    target=(--impl "$METERSPEC_ADAPTER")
elif [[ -n "${METERSPEC_URL:-}" ]]; then
    # No --api-key: the harness reads METERSPEC_API_KEY itself, and ps shows a command line.
    target=(--http "$METERSPEC_URL")
else
    echo "meterspec conformance: give an adapter command (adapter) or an HTTP URL (url)" >&2
    exit 2
fi
extra=()
if [[ -n "${METERSPEC_ARGS:-}" ]]; then read -r -a extra <<< "$METERSPEC_ARGS"; fi
mkdir -p "$out"
# An earlier run's files must not pass for this one's (a harness that cannot start writes none).
rm -f "$out/report.jsonl" "$out/report.md" "$out/badge.svg"
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
