// Char server settings, all from the environment (see workloads/runtime/config.ts).
import { type AuthServiceConfig, readAuthServiceConfig } from "../auth/config.ts";
import { parseRoAddress, type RoAddress } from "../auth/ro-tickets.ts";
import { type Env, EnvReader } from "../runtime/config.ts";

export interface StartPoint {
  map: string;
  x: number;
  y: number;
}

export interface CharConfig extends AuthServiceConfig {
  /** Where clients connect after select, host:port (the Region's gateway Service). */
  gatewayAddress: string;
  characterTokenTtlMs: number;
  maxCharacters: number;
  startPoint: StartPoint;
  /**
   * The RO char endpoint (0x0065, 0x0067, 0x0066), off unless the Region turns it on: its port,
   * and the gateway's RO map endpoint as clients reach it (the address 0x0071 gives).
   */
  ro?: { port: number; host: string; mapAddress: RoAddress };
}

/** rAthena's char server listens on 6121; the HTTP API keeps the number. */
export const DEFAULT_CHAR_PORT = 6121;

export function parseStartPoint(s: string): StartPoint | undefined {
  const m = /^([A-Za-z0-9_@-]{1,15}),(\d{1,4}),(\d{1,4})$/.exec(s);
  return m ? { map: m[1]!, x: Number(m[2]), y: Number(m[3]) } : undefined;
}

export function charConfigFromEnv(env: Env = process.env): CharConfig {
  const r = new EnvReader(env);
  const base = readAuthServiceConfig(r, DEFAULT_CHAR_PORT, "HYBRIDP2P_CHAR_PORT");
  const gatewayAddress = r.required("HYBRIDP2P_GATEWAY_ADDRESS");
  if (gatewayAddress && !/^[A-Za-z0-9.[\]:-]+:\d{1,5}$/.test(gatewayAddress)) {
    r.problem("HYBRIDP2P_GATEWAY_ADDRESS", `must be host:port (got ${JSON.stringify(gatewayAddress)})`);
  }
  const sp = r.str("HYBRIDP2P_START_POINT", "prontera,156,191");
  let startPoint = parseStartPoint(sp);
  if (!startPoint) {
    r.problem(
      "HYBRIDP2P_START_POINT",
      `must be map,x,y such as prontera,156,191 (got ${JSON.stringify(sp)})`,
    );
    startPoint = { map: "prontera", x: 156, y: 191 };
  }
  const cfg: CharConfig = {
    ...base,
    gatewayAddress,
    characterTokenTtlMs: r.duration("HYBRIDP2P_CHARACTER_TOKEN_TTL", 60_000, {
      minMs: 1000,
      maxMs: 3_600_000,
    }),
    maxCharacters: r.int("HYBRIDP2P_MAX_CHARACTERS", { default: 9, min: 1, max: 15 }),
    startPoint,
    ro: readRoChar(r),
  };
  r.done();
  return cfg;
}

function readRoChar(r: EnvReader): CharConfig["ro"] {
  if (r.str("HYBRIDP2P_RO_CHAR_PORT") === undefined) return undefined;
  const raw = r.required("HYBRIDP2P_RO_MAP_ADDRESS");
  const mapAddress = parseRoAddress(raw);
  if (raw && !mapAddress)
    r.problem("HYBRIDP2P_RO_MAP_ADDRESS", `must be host:port (got ${JSON.stringify(raw)})`);
  return {
    port: r.port("HYBRIDP2P_RO_CHAR_PORT", 6121),
    host: r.str("HYBRIDP2P_LISTEN_HOST", "0.0.0.0"),
    mapAddress: mapAddress ?? { host: "127.0.0.1", port: 5121 },
  };
}
