// `hybrid-workload keyset ...`: make and rotate the signing keyset kept in the auth Secret's
// keyset.json. Each subcommand prints the new document; nothing is changed in place.
import { readFile } from "node:fs/promises";
import { Command } from "commander";
import {
  activateKey,
  addKey,
  type KeysetDocument,
  newKeysetDocument,
  publicKeyset,
  removeKey,
  type SigningAlg,
} from "./keyset.ts";

const print = (doc: KeysetDocument): void => {
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
};
const load = async (file: string) => JSON.parse(await readFile(file, "utf8")) as KeysetDocument;
const defaultKid = () => `k-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}`;

export function keysetCommand(): Command {
  const cmd = new Command("keyset").description(
    "make and rotate the token signing keyset (keyset.json of the auth Secret)",
  );
  cmd
    .command("new")
    .description("a keyset with one new active key")
    .option("--kid <kid>", "key id", defaultKid())
    .option("--alg <alg>", "EdDSA (Ed25519) or ES256", "EdDSA")
    .action(async (o: { kid: string; alg: SigningAlg }) => print(await newKeysetDocument(o.kid, o.alg)));
  cmd
    .command("add <file>")
    .description("add a key (inactive unless --activate: activate only once every pod has it)")
    .option("--kid <kid>", "key id", defaultKid())
    .option("--alg <alg>", "EdDSA (Ed25519) or ES256", "EdDSA")
    .option("--activate", "make it the signing key at once")
    .action(async (file: string, o: { kid: string; alg: SigningAlg; activate?: boolean }) =>
      print(await addKey(await load(file), o.kid, { activate: o.activate, alg: o.alg })),
    );
  cmd
    .command("activate <file> <kid>")
    .description("sign new tokens with this key")
    .action(async (file: string, kid: string) => print(activateKey(await load(file), kid)));
  cmd
    .command("remove <file> <kid>")
    .description("drop an inactive key: tokens it signed are refused from then on")
    .action(async (file: string, kid: string) => print(removeKey(await load(file), kid)));
  cmd
    .command("public <file>")
    .description("the public-only keyset, for verifiers such as the gateway")
    .action(async (file: string) => print(publicKeyset(await load(file))));
  return cmd;
}
