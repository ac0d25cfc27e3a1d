#!/usr/bin/env bash
# Runs every test: installs what is missing, type-checks, lints, then the unit and
# integration suites (the integration global setup starts and stops the local control
# plane and data services). Ends with "N passed, N failed" from vitest's JSON report.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

bash hack/ensure-deps.sh || exit 1
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"   # Node 24 from the node package

status=0
log "type-check"; tsc -p tsconfig.json || status=1
log "lint";       biome check --reporter=summary . >/dev/null 2>&1 || { biome check . ; status=1; }

report="$REPO_ROOT/.cache/test-results/vitest.json"
mkdir -p "$(dirname "$report")"; rm -f "$report"
log "vitest (unit + integration)"
vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=1

if [ -f "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed`);
    process.exit(r.numFailedTests > 0 || !r.success ? 1 : 0);
  ' "$report" || status=1
else
  echo "0 passed, 1 failed"   # vitest did not produce a report: the run itself failed
  status=1
fi
exit $status
