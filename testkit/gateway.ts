// Test and benchmark helpers: a gateway with a stand-in map server on a real NATS, a keyset,
// and development tokens for as many characters as asked.
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@nats-io/transport-node";
import type { ZoneFlags } from "../platform/flags/layout.ts";
import { connectNats, requireStoreAccess } from "../platform/stores/access.ts";
import { GatewayAuth } from "../workloads/auth/gateway.ts";
import { Keyset, type KeysetDocument, newKeysetDocument, staticKeys } from "../workloads/auth/keyset.ts";
import { devToken } from "../workloads/client/token.ts";
import { consumeEvents, type EventConsumer } from "../workloads/gateway/events.ts";
import { Gateway, type GatewayOptions, type MapDirectory } from "../workloads/gateway/gateway.ts";
import { testServingTls } from "./tls.ts";

export interface TestGateway {
  gateway: Gateway;
  url: string;
  nc: NatsConnection;
  keyset: KeysetDocument;
  region: string;
  token(characterId: string, map: string, name?: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startTestGateway(o: {
  natsUrl: string;
  directory: MapDirectory;
  region?: string;
  id?: string;
  keyset?: KeysetDocument;
  options?: Partial<GatewayOptions>;
}): Promise<TestGateway> {
  const region = o.region ?? `r${randomBytes(4).toString("hex")}`;
  const keyset = o.keyset ?? (await newKeysetDocument("k1"));
  const auth = new GatewayAuth({ keys: staticKeys(await Keyset.parse(JSON.stringify(keyset))) });
  const nc = await connectNats(requireStoreAccess("nats", o.natsUrl));
  const control = await connectNats(requireStoreAccess("nats", o.natsUrl));
  const id = o.id ?? "gw-0";
  const gateway = new Gateway({
    nc,
    control,
    region,
    id,
    verify: (t) => auth.verify(t),
    directory: o.directory,
    // wss from the suite's test CA, as a Region serves by default (options.tls: undefined for ws).
    tls: testServingTls(),
    ...o.options,
  });
  const events: EventConsumer = await consumeEvents(nc, region, id, (b, zone) => gateway.onEvents(b, zone));
  const port = await gateway.listen(0);
  return {
    gateway,
    url: `${gateway.tls ? "wss" : "ws"}://127.0.0.1:${port}`,
    nc,
    keyset,
    region,
    token: (characterId, map, name) => devToken({ keyset, characterId, map, characterName: name }),
    async stop() {
      await gateway.close();
      await events.stop();
      await nc.drain().catch(() => undefined);
      await control.drain().catch(() => undefined);
    },
  };
}

/** A zone's flag document as the operator's compiler would publish it. */
export function testZoneFlags(o: {
  namespace: string;
  zone: string;
  region: string;
  maps: string[];
  p2p: boolean;
  zoneFallback?: boolean;
  gateway?: boolean;
}): ZoneFlags {
  const service = (enabled: boolean) => ({ enabled, fallback: false });
  return {
    v: 1,
    namespace: o.namespace,
    zone: o.zone,
    region: o.region,
    policy: "gateway-test",
    enabled: o.p2p,
    fallback: o.zoneFallback ?? false,
    services: {
      "map-server": service(true),
      gateway: service(o.gateway ?? true),
      coordinator: service(true),
      "char-server": service(false),
      "login-server": service(false),
    },
    maps: o.maps.map((name) => ({ name, type: "field", p2p: true })),
    transports: ["webrtc"],
    rolloutPercent: 100,
    mesh: { maxPeers: 30, maxLinks: 8, peerTTLSeconds: 30, refreshSeconds: 10 },
    thresholds: {
      latencyMs: { warn: 100, critical: 200, max: 300 },
      lossPercent: { warn: 1, critical: 2, max: 5 },
      jitterMs: { warn: 20, critical: 50 },
      coordinatorTimeoutMs: 3000,
      minPeers: 2,
    },
    recovery: { mode: "Auto", initialSeconds: 1, maxSeconds: 30, clearToken: "" },
  };
}
