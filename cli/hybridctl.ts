#!/usr/bin/env node
// hybridctl: look at and steer the flag plane. This file only wires the commands (cli/commands/)
// into commander; what they share is in cli/common.ts.
//   hybridctl status [-n NS | -A] [-o table|json|yaml]
//   hybridctl p2p enable|disable (--zone Z | --selector S) [-n NS] [--timeout 60]
//   hybridctl fallback force|clear (--zone Z | --policy P | --service S --region R) [--reason TEXT]
//   hybridctl flags get [--zone Z] [-n NS] [-o table|json|yaml]
//   hybridctl flags watch [-n NS]
//   hybridctl bots --count N --zone Z --gateway URL (--login URL --char URL | --keyset FILE)
//   hybridctl token --keyset FILE --character ID --map MAP
//   hybridctl events list|describe|create|cancel [-n NS]
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { addBotsCommand } from "./commands/bots.ts";
import { addEventsCommands } from "./commands/events.ts";
import { addFallbackCommands } from "./commands/fallback.ts";
import { addFlagsCommands } from "./commands/flags.ts";
import { addP2PCommands } from "./commands/p2p.ts";
import { addStatusCommand } from "./commands/status.ts";
import { addTokenCommand } from "./commands/token.ts";
import { addTopCommand } from "./commands/top.ts";
import { CliError, type Globals, type Io } from "./common.ts";

function program(io: Io, signal?: AbortSignal): Command {
  const cmd = new Command("hybridctl")
    .description("Look at and steer the hybrid-p2p flag plane")
    .option("--kubeconfig <path>", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    .option("--etcd-endpoints <urls>", "flag store endpoints (default: $HYBRIDP2P_ETCD_ENDPOINTS)")
    .option("--nats-url <urls>", "the report channel: the Region's NATS (default: $HYBRIDP2P_NATS_URL)")
    .option("--prefix <prefix>", "flag key prefix", "/hybridp2p/v1/")
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) });
  const globals = () => cmd.opts<Globals>();
  addStatusCommand(cmd, io, globals);
  addTopCommand(cmd, io, globals);
  addP2PCommands(cmd, io, globals);
  addFallbackCommands(cmd, io, globals);
  addFlagsCommands(cmd, io, globals, signal);
  addTokenCommand(cmd, io);
  addBotsCommand(cmd, io, globals, signal);
  addEventsCommands(cmd, io, globals);
  return cmd;
}

/** Runs hybridctl; returns the exit code. */
export async function run(argv: string[], io: Io, signal?: AbortSignal): Promise<number> {
  try {
    await program(io, signal).parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === "string" && e.code.startsWith("commander.")) {
      return e.code === "commander.helpDisplayed" || e.code === "commander.version" ? 0 : (e.exitCode ?? 1);
    }
    io.err(`error: ${err instanceof CliError ? err.message : String(err)}`);
    return 1;
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const io: Io = { out: (s) => process.stdout.write(`${s}\n`), err: (s) => process.stderr.write(`${s}\n`) };
  run(process.argv.slice(2), io).then((code) => process.exit(code));
}
