#!/usr/bin/env node
// One entry point for every workload image: `node workloads/main.ts <workload>`. Each workload
// reads its configuration from the environment (HYBRIDP2P_*, POD_*). Add a workload with one
// row in WORKLOADS; its module is loaded only when chosen.
import { Command } from "commander";
import { keysetCommand } from "./auth/keyset-cli.ts";

interface Workload {
  name: string;
  description: string;
  run: () => Promise<void>;
}

export const WORKLOADS: Workload[] = [
  {
    name: "login-server",
    description: "accounts, sign-up and login; issues session tokens",
    run: async () => (await import("./login-server/main.ts")).run(),
  },
  {
    name: "char-server",
    description: "characters of the logged-in account; issues character tokens for the gateway",
    run: async () => (await import("./char-server/main.ts")).run(),
  },
  {
    name: "map-server",
    description: "owns a zone's maps through etcd leases and simulates them on a worker pool",
    run: async () => (await import("./map-server/main.ts")).run(),
  },
  {
    name: "gateway",
    description: "client WebSocket gateway; routes play to map servers over NATS",
    run: async () => (await import("./gateway/main.ts")).run(),
  },
  {
    name: "coordinator",
    description: "P2P coordinator: WebRTC signaling and meshes per zone, shared across replicas over NATS",
    run: async () => (await import("./coordinator/main.ts")).run(),
  },
  {
    name: "orchestrator",
    description:
      "global orchestrator: delivers WorldEvents to every targeted Region's map servers (leader-elected)",
    run: async () => (await import("./orchestrator/main.ts")).run(),
  },
];

export function program(): Command {
  const cmd = new Command("hybrid-workload").description("hybrid-p2p workloads").showHelpAfterError();
  for (const w of WORKLOADS) {
    cmd.command(w.name).description(w.description).action(w.run);
  }
  cmd.addCommand(keysetCommand());
  return cmd;
}

if (import.meta.main) {
  try {
    await program().parseAsync(process.argv);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
