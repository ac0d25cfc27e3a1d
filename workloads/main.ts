#!/usr/bin/env node
// One entry point for every workload image: `node workloads/main.ts <workload>`. Each workload
// reads its configuration from the environment (HYBRIDP2P_*, POD_*). Add a workload with one
// row in WORKLOADS; its module is loaded only when chosen.
import { Command } from "commander";

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
];

export function program(): Command {
  const cmd = new Command("hybrid-workload").description("hybrid-p2p workloads").showHelpAfterError();
  for (const w of WORKLOADS) {
    cmd.command(w.name).description(w.description).action(w.run);
  }
  cmd
    .command("keyset")
    .description("print a new signing keyset (JSON) for the auth Secret's keyset.json")
    .option("--kid <kid>", "key id", `k-${new Date().toISOString().slice(0, 10)}`)
    .option("--add-to <file>", "add a key to this keyset instead of starting a new one")
    .option("--activate", "with --add-to: make the new key the active one")
    .option("--remove <kid>", "with --add-to: remove this (inactive) key instead of adding one")
    .option("--public", "print the public-only keyset (for verifiers)")
    .action(
      async (o: { kid: string; addTo?: string; activate?: boolean; remove?: string; public?: boolean }) => {
        const { addKey, newKeysetDocument, publicKeyset, removeKey } = await import("./auth/keyset.ts");
        const { readFile } = await import("node:fs/promises");
        let doc = o.addTo ? JSON.parse(await readFile(o.addTo, "utf8")) : await newKeysetDocument(o.kid);
        if (o.addTo)
          doc = o.remove ? removeKey(doc, o.remove) : await addKey(doc, o.kid, { activate: o.activate });
        process.stdout.write(`${JSON.stringify(o.public ? publicKeyset(doc) : doc, null, 2)}\n`);
      },
    );
  return cmd;
}

if (import.meta.main) {
  await program().parseAsync(process.argv);
}
