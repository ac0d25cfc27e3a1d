// `hybridctl token`: a development token for one character, signed with a keyset file. Real
// players get theirs from the login and char servers (workloads/login-server, char-server).
import type { Command } from "commander";
import { devToken } from "../../workloads/client/token.ts";
import type { Io } from "../common.ts";

export function addTokenCommand(cmd: Command, io: Io): void {
  cmd
    .command("token")
    .description("sign a development token for one character (development only)")
    .requiredOption("--keyset <file>", "keyset JSON with a private active key (hybrid-workload keyset new)")
    .requiredOption("--character <id>", "character id")
    .requiredOption("--map <map>", "the map the token binds the character to")
    .option("--ttl <seconds>", "lifetime", (v) => Number(v), 3600)
    .action(async (o: { keyset: string; character: string; map: string; ttl: number }) => {
      io.out(await devToken({ keyset: o.keyset, characterId: o.character, map: o.map, ttlMs: o.ttl * 1000 }));
    });
}
