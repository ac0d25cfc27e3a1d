import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { ZoneFlags } from "../../platform/flags/layout.ts";
import { meshWanted, parseP2PConfig } from "../../platform/protocol/p2pconfig.ts";
import { buildClientConfig, type ConfigSubject, turnCredentials, turnExpiry } from "./clientconfig.ts";

const doc = (over: Partial<ZoneFlags> = {}): ZoneFlags => ({
  v: 1,
  namespace: "demo",
  zone: "fields",
  region: "demo",
  policy: "fields-p2p",
  enabled: true,
  fallback: false,
  services: { gateway: { enabled: true, fallback: false } },
  maps: [
    { name: "prt_fild08", type: "Field", p2p: true },
    { name: "prt_maze01", type: "Dungeon", p2p: false },
  ],
  transports: ["webrtc-datachannel", "websocket-relay"],
  rolloutPercent: 100,
  mesh: { maxPeers: 40, maxLinks: 8, peerTTLSeconds: 30, refreshSeconds: 10 },
  thresholds: {
    latencyMs: { warn: 100, critical: 200, max: 300 },
    lossPercent: { warn: 1, critical: 2, max: 5 },
    jitterMs: { warn: 20, critical: 50 },
    coordinatorTimeoutMs: 1500,
    minPeers: 2,
  },
  recovery: { mode: "Auto", initialSeconds: 5, maxSeconds: 300, clearToken: "" },
  ...over,
});
const who: ConfigSubject = { characterId: "42", zone: "fields", map: "prt_fild08", mode: "p2p", reason: "" };
const at = Date.UTC(2026, 0, 1, 12, 0, 0);

describe("the P2P client config", () => {
  it("carries the zone's policy and round-trips through the client's parser", () => {
    const c = buildClientConfig(who, doc(), { epoch: 7, nowMs: at, coordinators: ["wss://c.example/"] });
    expect(c).toMatchObject({
      v: 1,
      epoch: 7,
      enabled: true,
      mode: "p2p",
      rollout: { percent: 100, included: true },
    });
    expect(c.mesh).toMatchObject({ maxPeers: 40, maxLinks: 8 });
    expect(c.coordinators).toEqual(["wss://c.example/"]);
    expect(parseP2PConfig(JSON.stringify(c))).toEqual(c);
    expect(meshWanted(c)).toBe(true);
  });

  it("keeps its version across epochs that change nothing for the player, and changes it otherwise", () => {
    const a = buildClientConfig(who, doc(), { epoch: 1, nowMs: at });
    expect(buildClientConfig({ ...who, reason: "other" }, doc(), { epoch: 2, nowMs: at }).version).toBe(
      a.version,
    );
    expect(
      buildClientConfig(who, doc({ mesh: { maxPeers: 30, peerTTLSeconds: 30, refreshSeconds: 10 } }), {
        epoch: 2,
        nowMs: at,
      }).version,
    ).not.toBe(a.version);
    expect(buildClientConfig({ ...who, mode: "fallback" }, doc(), { epoch: 1, nowMs: at }).version).not.toBe(
      a.version,
    );
  });

  it("is off on a map kept server-side, and without a WebRTC transport", () => {
    expect(buildClientConfig({ ...who, map: "prt_maze01" }, doc(), { epoch: 1, nowMs: at }).enabled).toBe(
      false,
    );
    const relayOnly = buildClientConfig(who, doc({ transports: ["websocket-relay"] }), {
      epoch: 1,
      nowMs: at,
    });
    expect(meshWanted(relayOnly)).toBe(false);
  });

  it("hands out TURN REST credentials per half-TTL window, only when the policy allows TURN", () => {
    const ice = {
      stun: ["stun:stun.example:3478"],
      turn: ["turn:turn.example:3478"],
      turnSecret: "s3cret",
      turnTtlSeconds: 600,
    };
    const noTurn = buildClientConfig(who, doc(), { epoch: 1, nowMs: at, ice });
    expect(noTurn.ice.servers).toEqual([{ urls: ["stun:stun.example:3478"] }]);
    const turnOnly = buildClientConfig(who, doc({ transports: ["webrtc-turn"] }), {
      epoch: 1,
      nowMs: at,
      ice,
    });
    expect(turnOnly.ice.transportPolicy).toBe("relay");
    const turn = turnOnly.ice.servers[1]!;
    const expiry = turnExpiry(at, 600);
    expect(expiry * 1000 - at).toBeGreaterThanOrEqual(300_000);
    expect(expiry * 1000 - at).toBeLessThanOrEqual(600_000);
    expect(turn.username).toBe(`${expiry}:42`);
    expect(turn.credential).toBe(createHmac("sha1", "s3cret").update(`${expiry}:42`).digest("base64"));
    expect(turnCredentials("s3cret", "42", expiry)).toEqual({
      username: turn.username,
      credential: turn.credential,
    });
    // Same window, same document; the next window, a new version.
    expect(
      buildClientConfig(who, doc({ transports: ["webrtc-turn"] }), { epoch: 1, nowMs: at + 1000, ice })
        .version,
    ).toBe(turnOnly.version);
    expect(
      buildClientConfig(who, doc({ transports: ["webrtc-turn"] }), { epoch: 1, nowMs: at + 300_000, ice })
        .version,
    ).not.toBe(turnOnly.version);
  });

  it("follows the rollout bucket of the character", () => {
    const c = buildClientConfig(who, doc({ rolloutPercent: 0 }), { epoch: 1, nowMs: at });
    expect(c.rollout).toEqual({ percent: 0, included: false });
  });
});
