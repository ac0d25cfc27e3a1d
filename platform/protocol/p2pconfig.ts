// The P2P client configuration: what a P2P-capable client (the SDK, the browser client) needs to
// know about P2P in the zone it plays in, derived by the gateway from the live flag snapshot and
// the player's session. The gateway serves it over HTTP (`GET /v1/p2p/config`, the character
// token as Bearer, ETag = `version`) and pushes every new version over the session (`p2pConfig`,
// in the session's sequence). docs/p2p-client-config.md describes it; this module is the
// source of the shape, and safe to load in a browser (no Node APIs).
//
// Versioning: `v` is the schema version (a field removed or changing meaning means v: 2; new
// optional fields do not). `version` is the content's version: it changes whenever anything
// in the document does, and a client ignores a document whose version it already has.
import type { Mode } from "./messages.ts";

export const P2P_CONFIG_SCHEMA_VERSION = 1;

export const TRANSPORTS = ["webrtc-datachannel", "webrtc-turn", "websocket-relay"] as const;
export type P2PTransport = (typeof TRANSPORTS)[number];

/** An ICE server as RTCPeerConnection takes it (W3C RTCIceServer). */
export interface IceServer {
  urls: string[];
  /** TURN only: `<expiry, unix seconds>:<character>` (the TURN REST API's time-limited user). */
  username?: string;
  /** TURN only: base64 HMAC-SHA1 of the username under the TURN server's shared secret. */
  credential?: string;
}

export interface P2PClientConfig {
  v: 1;
  /** Content version (also the HTTP ETag): a client applies a document once. */
  version: string;
  /** The flag epoch the document was built from (0: no flag store). */
  epoch: number;
  zone: string;
  map: string;
  /** P2P switched on for this zone and map by the flags (before rollout and fallback). */
  enabled: boolean;
  /** This player's effective mode now: p2p (mesh), server, or fallback (server path, P2P held off). */
  mode: Mode;
  /** Why the mode is what it is. */
  reason: string;
  /** The zone's rollout, and whether this character is in it (a stable hash of the character). */
  rollout: { percent: number; included: boolean };
  /** In order of preference, as the policy lists them. */
  transports: P2PTransport[];
  ice: {
    servers: IceServer[];
    /** "relay": only TURN candidates (the policy allows webrtc-turn but not direct data channels). */
    transportPolicy: "all" | "relay";
    /** When the TURN credentials expire (RFC 3339); a new version comes before then. */
    expiresAt?: string;
  };
  /** Coordinator replicas (WebSocket URLs) for signaling; empty: the client's own setting. */
  coordinators: string[];
  /** maxLinks: direct links per peer, nearest mates first; the gateway relays the rest in view. */
  mesh: { maxPeers: number; maxLinks?: number; peerTTLSeconds: number; refreshSeconds: number };
  fallback: {
    latencyMs: { warn: number; critical: number; max: number };
    lossPercent: { warn: number; critical: number; max: number };
    jitterMs: { warn: number; critical: number };
    coordinatorTimeoutMs: number;
    minPeers: number;
  };
  recovery: { mode: "Auto" | "Manual"; initialSeconds: number; maxSeconds: number };
}

/** Whether the config lets the client open WebRTC links at all. */
export function webrtcAllowed(c: P2PClientConfig): boolean {
  return c.transports.includes("webrtc-datachannel") || c.transports.includes("webrtc-turn");
}

/** Whether the client should be in a mesh now: P2P mode, and a WebRTC transport to do it with. */
export function meshWanted(c: P2PClientConfig): boolean {
  return c.mode === "p2p" && c.enabled && webrtcAllowed(c);
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/**
 * Checks a document received from a gateway (JSON text); throws an Error naming the first
 * problem. Unknown fields are kept (a newer gateway may add optional ones).
 */
export function parseP2PConfig(text: string): P2PClientConfig {
  const c = JSON.parse(text) as unknown;
  const fail = (why: string): never => {
    throw new Error(`bad P2P client config: ${why}`);
  };
  if (!isObj(c)) return fail("not an object");
  if (c.v !== P2P_CONFIG_SCHEMA_VERSION) fail(`unsupported schema version ${JSON.stringify(c.v)}`);
  for (const k of ["version", "zone", "map", "reason"] as const)
    if (typeof c[k] !== "string") fail(`${k} is not a string`);
  if (!isNum(c.epoch)) fail("epoch is not a number");
  if (typeof c.enabled !== "boolean") fail("enabled is not a boolean");
  if (c.mode !== "p2p" && c.mode !== "server" && c.mode !== "fallback") fail("bad mode");
  if (!isObj(c.rollout) || !isNum(c.rollout.percent) || typeof c.rollout.included !== "boolean")
    fail("bad rollout");
  if (!Array.isArray(c.transports) || !c.transports.every((t) => typeof t === "string"))
    fail("transports is not a list of strings");
  const ice = c.ice;
  if (!isObj(ice) || !Array.isArray(ice.servers)) return fail("bad ice");
  for (const s of ice.servers)
    if (!isObj(s) || !Array.isArray(s.urls) || !s.urls.every((u) => typeof u === "string"))
      fail("an ICE server needs urls");
  if (ice.transportPolicy !== "all" && ice.transportPolicy !== "relay") fail("bad ice.transportPolicy");
  if (!Array.isArray(c.coordinators) || !c.coordinators.every((u) => typeof u === "string"))
    fail("coordinators is not a list of URLs");
  if (!isObj(c.mesh) || !isNum(c.mesh.maxPeers) || !isNum(c.mesh.peerTTLSeconds)) fail("bad mesh");
  const f = c.fallback;
  if (!isObj(f) || !isObj(f.latencyMs) || !isObj(f.lossPercent) || !isNum(f.coordinatorTimeoutMs))
    fail("bad fallback");
  if (!isObj(c.recovery) || (c.recovery.mode !== "Auto" && c.recovery.mode !== "Manual"))
    fail("bad recovery");
  return c as unknown as P2PClientConfig;
}
