// Test helper: a coordinator for the P2P clients of gateway and bot tests (P2P clients mesh
// through it, workloads/coordinator). One in-process replica on the test NATS that trusts the
// gateway's keyset and asks the gateways where sessions play (as the workload does), with a
// static policy, and a loopback STUN responder (stun.ts says why).
import type { RTCPeerConnectionConfig } from "werift";
import type { KeysetDocument } from "../workloads/auth/keyset.ts";
import { type LoopbackStun, startLoopbackStun } from "../workloads/coordinator/stun.ts";
import { startTestCoordinator, TEST_THRESHOLDS, type TestCoordinator, testKeys } from "./coordinator.ts";

export interface TestMesh {
  coordinator: TestCoordinator;
  /** For P2PClientOptions.coordinators. */
  urls: string[];
  /** For P2PClientOptions.ice. */
  ice: Partial<RTCPeerConnectionConfig>;
  stop(): Promise<void>;
}

/**
 * Every zone in P2P for the coordinator (the gateway's `mode` messages decide when clients
 * join), one area per map (these tests walk players across the map, and area meshes are the
 * coordinator tests' business), and quality thresholds out of the way: one process hosts every
 * werift peer here, and its event loop lag reads as round trip.
 */
export async function startTestMesh(o: {
  natsUrl: string;
  region: string;
  keyset: KeysetDocument;
  zones: Record<string, string[]>;
}): Promise<TestMesh> {
  const stun: LoopbackStun = await startLoopbackStun();
  const coordinator = await startTestCoordinator({
    natsUrl: o.natsUrl,
    region: o.region,
    replica: "coord-0",
    keys: await testKeys(o.keyset),
    zones: o.zones,
    locateViaGateways: true,
    policy: {
      areaCells: 0x10000,
      warmupMs: 600_000,
      thresholds: {
        ...TEST_THRESHOLDS,
        latencyMs: { warn: 60_000, critical: 60_000, max: 60_000 },
        lossPercent: { warn: 100, critical: 100, max: 100 },
        jitterMs: { warn: 60_000, critical: 60_000 },
        coordinatorTimeoutMs: 10_000,
      },
    },
  }).catch(async (err) => {
    await stun.close();
    throw err;
  });
  return {
    coordinator,
    urls: [coordinator.url],
    ice: stun.ice,
    async stop() {
      await coordinator.stop();
      await stun.close();
    },
  };
}
