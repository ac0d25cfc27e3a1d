#!/usr/bin/env bash
# Runs every test: installs what is missing, type-checks, lints, then the unit and
# integration suites (the integration global setup starts and stops the local control
# plane and data services), then the e2e suite on a local cluster. Ends with
# "N passed, N failed" from vitest's JSON reports.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

bash hack/ensure-deps.sh || exit 1
export PATH="$REPO_ROOT/node_modules/.bin:$PATH"   # Node 24 from the node package

# Every temp file and directory the tests, their services and the processes they start make
# (CAs, keysets, state dirs, browser profiles) goes under one directory, removed at the end,
# even for a test process that was killed before its own cleanup ran. --one-file-system: a
# mount a failed teardown left behind is not followed into.
run_tmp="$(mktemp -d "${TMPDIR:-/tmp}/hybridp2p-test-XXXXXX")"
chmod 1777 "$run_tmp"   # as /tmp: services that run as their own user (PostgreSQL) make theirs here too
if [ "${HYBRIDP2P_KEEP_STATE:-}" = 1 ]; then
  trap 'log "state and logs kept in $run_tmp"' EXIT
else
  trap 'rm -rf --one-file-system "$run_tmp"' EXIT
fi
export TMPDIR="$run_tmp"
# testkit/private-tmp.ts: the vitest runs below use this directory rather than nest one each (the
# node's unix socket paths under it must stay within 108 bytes).
export HYBRIDP2P_PRIVATE_TMP="$run_tmp"

status=0
checks_failed=0   # type-check and lint count as one failed test each in the summary line
log "type-check"; tsc -p tsconfig.json || checks_failed=$((checks_failed + 1))
log "lint";       biome check --reporter=summary . >/dev/null 2>&1 || { biome check . ; checks_failed=$((checks_failed + 1)); }
[ "$checks_failed" -eq 0 ] || status=1

results="$REPO_ROOT/.cache/test-results"
mkdir -p "$results"; rm -f "$results"/*.json
log "vitest (unit + integration)"
vitest run --project unit --project integration --reporter=default --reporter=json \
  --outputFile.json="$results/vitest.json" "$@" || status=1
# The e2e suite on a local cluster that runs pods (its global setup starts and stops it);
# KUBECONFIG is dropped so it never lands on a cluster the caller happens to point at.
log "vitest e2e (local cluster)"
env -u KUBECONFIG vitest run --config e2e/vitest.config.ts --reporter=default --reporter=json \
  --outputFile.json="$results/e2e.json" || status=1

# The summary CI reads, from vitest's JSON reports; a missing report counts as a failure, and
# so does a failed type-check or lint (else a lint error ended in "N passed, 0 failed").
node -e '
  const fs = require("fs");
  let passed = 0, failed = Number(process.argv[1]);
  if (failed > 0) console.error(`type-check or lint failed: ${failed} (see above)`);
  for (const f of process.argv.slice(2)) {
    if (!fs.existsSync(f)) { failed++; console.error(`no report: ${f}`); continue; }
    const r = JSON.parse(fs.readFileSync(f, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests + (r.success || r.numFailedTests > 0 ? 0 : 1);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed > 0 ? 1 : 0);
 ' "$checks_failed" "$results/vitest.json" "$results/e2e.json" || status=1
exit $status
