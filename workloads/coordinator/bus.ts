// What coordinator replicas (and the gateways watching them) say to each other over NATS.
// Payloads are MessagePack (platform/bus/contract.ts encode/decode).
//
//   hp2pcoord.<region>.roster        RosterMsg: upserts, removals, full snapshots per replica
//   hp2pcoord.<region>.hello         a replica that just started asks for snapshots
//   hp2pcoord.<region>.r.<replica>   SignalMsg for a peer connected to that replica
//   hp2pcoord.<region>.alive         AliveMsg every aliveMs: liveness and each zone's state
//   hp2pcoord.<region>.locate        request/reply coordinator -> gateways: LocateRequest ->
//                                    LocateReply from the gateway holding the session (the others
//                                    stay silent), so a peer meshes on the map it is really on
//
// State is rebuilt from snapshots (every syncMs and on hello), so a replica that missed a
// message converges anyway; a replica whose AliveMsg stops loses its entries.
import type { RosterEntry } from "./mesh.ts";

const TOKEN = /^[A-Za-z0-9_-]+$/;

function tok(what: string, s: string): string {
  if (!TOKEN.test(s)) throw new Error(`invalid ${what} for a NATS subject token: ${JSON.stringify(s)}`);
  return s;
}

export const coordSubjects = {
  roster: (region: string) => `hp2pcoord.${tok("region", region)}.roster`,
  hello: (region: string) => `hp2pcoord.${tok("region", region)}.hello`,
  replica: (region: string, replica: string) =>
    `hp2pcoord.${tok("region", region)}.r.${tok("replica", replica)}`,
  alive: (region: string) => `hp2pcoord.${tok("region", region)}.alive`,
  locate: (region: string) => `hp2pcoord.${tok("region", region)}.locate`,
};

export interface LocateRequest {
  v: 1;
  /** The gateway session id the client joins with. */
  session: string;
}

/** Where a gateway session plays: the character, its map and its entity id there. */
export interface LocateReply {
  v: 1;
  characterId: string;
  map: string;
  entity: number;
}

export type RosterMsg =
  | { v: 1; replica: string; op: "upsert"; entries: RosterEntry[] }
  | { v: 1; replica: string; op: "remove"; peers: { zone: string; id: string }[] }
  /** Every peer the replica holds (replaces what others knew of that replica). */
  | { v: 1; replica: string; op: "snapshot"; entries: RosterEntry[] };

export interface SignalMsg {
  v: 1;
  zone: string;
  from: string;
  to: string;
  kind: "offer" | "answer" | "candidate";
  /** The offerer's attempt number (offers and answers). */
  n: number;
  data: string;
}

export interface ZoneState {
  zone: string;
  mode: "p2p" | "fallback";
  reason: string;
  peers: number;
  /** Peers with at least one pair going through the server relay. */
  relayed: number;
}

export interface AliveMsg {
  v: 1;
  replica: string;
  t: number;
  zones: ZoneState[];
}
