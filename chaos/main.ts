// npm run chaos [-- <scenario> ...]: faults and bad input at bounded volume, each scenario
// starting what it needs and stopping it afterwards. Each prints
//
//   RESULT chaos scenario=NAME runs=.. violations=.. <figures>
//
// and lists its violations (what broke an invariant) on stderr; the command exits 1 if any
// scenario had one. docs/chaos.md says what each scenario does and checks.
import { Command } from "commander";
import { usePrivateTmp } from "../testkit/private-tmp.ts";
import type { Scenario, ScenarioResult } from "./scenario.ts";

usePrivateTmp("chaos"); // its temp files (and its children's) are removed at exit

const SCENARIOS: Record<string, { about: string; load: () => Promise<Scenario> }> = {
  "operator-kill": {
    about:
      "two operator replicas killed at random while a policy is toggled over many zones: fencing, growing epochs, every pod on the last epoch, no orphaned children",
    load: async () => (await import("./operator-kill.ts")).operatorKill,
  },
  "bad-input": {
    about:
      "fuzzed frames at the gateway and the coordinator from many connections, malformed flag documents in the flag store, oversized and deeply nested manifests",
    load: async () => (await import("./bad-input.ts")).badInput,
  },
  "flag-store": {
    about:
      "the flag etcd restarted and compacted during policy toggles: every pod reaches the final epoch, fallback only after the grace period and left as the policy says",
    load: async () => (await import("./flag-store.ts")).flagStore,
  },
  bus: {
    about:
      "NATS restarted during play with 50 bots: no chat or combat event lost (JetStream), views resent, no sequence gap seen by a client",
    load: async () => (await import("./bus.ts")).bus,
  },
  database: {
    about:
      "PostgreSQL restarted during play: character progress lost at most the save window, no item or experience duplicated",
    load: async () => (await import("./database.ts")).database,
  },
  "pod-faults": {
    about:
      "map-server and gateway pods evicted and killed on the real-node cluster under 50 bots: ownership moves, bots reconnect, the Zone's status says what happened",
    load: async () => (await import("./pod-faults.ts")).podFaults,
  },
};

export function resultLine(name: string, r: ScenarioResult): string {
  const figures = Object.entries(r.figures).map(([k, v]) => `${k}=${v}`);
  return [
    "RESULT chaos",
    `scenario=${name}`,
    `runs=${r.runs}`,
    `violations=${r.violations.length}`,
    ...figures,
  ].join(" ");
}

async function main(names: string[]): Promise<number> {
  const unknown = names.filter((n) => !(n in SCENARIOS));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown scenario ${unknown.join(", ")}; known: ${Object.keys(SCENARIOS).join(", ")}\n`,
    );
    return 2;
  }
  let failed = 0;
  for (const name of names.length > 0 ? names : Object.keys(SCENARIOS)) {
    const log = (m: string) => process.stderr.write(`[chaos:${name}] ${m}\n`);
    log(SCENARIOS[name]!.about);
    const run = await SCENARIOS[name]!.load();
    const r = await run(log);
    for (const v of r.violations) log(`VIOLATION ${v}`);
    console.log(resultLine(name, r));
    if (r.violations.length > 0) failed++;
  }
  return failed > 0 ? 1 : 0;
}

if (import.meta.main) {
  const cmd = new Command("chaos")
    .description("faults and bad input at bounded volume; prints a RESULT line per scenario")
    .argument("[scenarios...]", `which to run (default: all): ${Object.keys(SCENARIOS).join(", ")}`)
    .action(async (names: string[]) => {
      process.exitCode = await main(names);
    });
  await cmd.parseAsync(process.argv);
  // Clients and timers of a finished scenario must not keep the process alive.
  process.exit(process.exitCode ?? 0);
}
