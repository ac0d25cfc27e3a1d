// hybridctl against the real API server, flag store and report channel, with the flag plane
// running and simulated map-server replicas reporting.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { GROUP, VERSION } from "../operator/api/constants.ts";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { connectNats } from "../platform/stores/access.ts";
import { eventually, startFlagPlane, type TestFlagPlane } from "../testkit/flags.ts";
import { createNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { envVars } from "../testkit/local/services.ts";
import type { Io } from "./common.ts";
import { run } from "./hybridctl.ts";

const env = inject("localEnv");
const quiet = { error: () => {}, warn: () => {}, info: () => {} };

describe("hybridctl", () => {
  const ns = `ctl-${randomUUID().slice(0, 8)}`;
  const prefix = `/test-${randomUUID()}/`;
  let etcd: Etcd3;
  let nc: NatsConnection;
  let plane: TestFlagPlane;
  let api: CustomObjectsApi;
  const pods = new Map<string, FlagClient>();

  /** hybridctl in this process; `out` fills as it prints, `done` is its end. */
  const ctlLive = (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const io: Io = { out: (s) => out.push(s), err: (s) => err.push(s) };
    const done = run(
      [
        ...args,
        ...["--kubeconfig", env.kubeconfig!, "--etcd-endpoints", env.etcdEndpoints!],
        ...["--nats-url", env.natsUrl!, "--prefix", prefix],
      ],
      io,
    ).then((code) => ({ code, out: out.join("\n"), err: err.join("\n") }));
    return { out, done };
  };
  const ctl = (...args: string[]) => ctlLive(...args).done;
  /** hybridctl as its own process whose environment holds `vars` and nothing else of ours, as
   * after `source env.sh` in a fresh terminal. */
  const ctlProcess = (vars: Record<string, string>, ...args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(
        process.execPath,
        [new URL("hybridctl.ts", import.meta.url).pathname, ...args],
        { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...vars }, encoding: "utf8" },
        (error, out, err) => resolve({ code: error ? Number(error.code ?? 1) : 0, out, err }),
      );
    });
  const zoneStatus = async (name: string) =>
    (
      (await api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: "zones",
        name,
      })) as {
        status?: { mode?: string; fallbackReason?: string };
      }
    ).status;

  beforeAll(async () => {
    etcd = connectFlagStore(env.etcd!);
    nc = await connectNats(env.nats!);
    const client = await testClient(env.kubeconfig!);
    await installCrds(client);
    await createNamespace(client, ns);
    const kc = new KubeConfig();
    kc.loadFromFile(env.kubeconfig!);
    api = kc.makeApiClient(CustomObjectsApi);
    const create = (
      plural: string,
      kind: string,
      name: string,
      spec: object,
      labels?: Record<string, string>,
    ) =>
      api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural,
        body: { apiVersion: `${GROUP}/${VERSION}`, kind, metadata: { name, namespace: ns, labels }, spec },
      });
    // The Region's own stores, reachable from the test: the flag plane publishes and listens there.
    await create("regions", "Region", "r1", {
      dataStores: {
        etcd: { mode: "External", external: { endpoints: env.etcdEndpoints!.split(",") } },
        nats: { mode: "External", external: { endpoints: [env.natsUrl!] } },
      },
    });
    for (const [name, type, replicas] of [
      ["fa", "Field", 1],
      ["fb", "Field", 2],
      ["tn", "Town", 1],
    ] as const) {
      await create(
        "zones",
        "Zone",
        name,
        { regionRef: { name: "r1" }, maps: [{ name: `${name}_map`, type }], mapServer: { replicas } },
        { tier: type.toLowerCase() },
      );
      for (let i = 0; i < replicas; i++) {
        const pod = `${name}-${i}`;
        pods.set(
          pod,
          new FlagClient({
            client: etcd,
            nats: nc,
            prefix,
            namespace: ns,
            zone: name,
            service: "map-server",
            pod,
            log: quiet,
          }),
        );
      }
    }
    plane = await startFlagPlane({
      kubeconfig: env.kubeconfig!,
      identity: "op-ctl",
      prefix,
      namespace: ns,
    });
    for (const p of pods.values()) await p.start();
  });

  afterAll(async () => {
    for (const p of pods.values()) await p.close();
    await plane?.stop();
    etcd?.close();
    await nc?.close();
  });

  it("p2p enable --selector creates the policy and follows the rollout until every replica reports", async () => {
    const r = await ctl("p2p", "enable", "--selector", "tier=field", "-n", ns, "--timeout", "30");
    expect(r.err).toMatch(/creating P2PPolicy hybridctl-/);
    expect(r.err).toMatch(/published as epoch \d+/);
    expect(r.err).toMatch(/2\/2 zones applied, 3\/3 pods acked/); // progress from the acks
    expect(r.out).toMatch(/applied: every replica of 2 zones runs epoch \d+/);
    expect(r.code).toBe(0);
    expect(pods.get("fb-1")!.current().mode).toBe("p2p");
    expect(pods.get("tn-0")!.current().mode).toBe("server");
  });

  it("status prints regions and zones as a table and as json", async () => {
    await eventually("zone status written", async () => (await zoneStatus("fb"))?.mode === "P2P");
    const t = await ctl("status", "-n", ns);
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/REGION\s+ZONES\s+MODES/);
    expect(t.out).toMatch(/fb\s+r1\s+P2P\s+\d+\s+2\/2/);
    const j = await ctl("status", "-n", ns, "-o", "json");
    const data = JSON.parse(j.out) as {
      regions: { name: string; zones: number }[];
      zones: { name: string; mode: string }[];
    };
    expect(data.regions).toEqual([expect.objectContaining({ name: "r1", zones: 3 })]);
    expect(data.zones.find((z) => z.name === "tn")!.mode).toBe("Server");
    const y = await ctl("status", "-n", ns, "-o", "yaml");
    expect(y.out).toMatch(/regions:\n/);

    // The coordinator's peer counts reach the table through the Zone's status.
    const coord = new FlagClient({
      client: etcd,
      nats: nc,
      prefix,
      namespace: ns,
      service: "coordinator",
      pod: "co-0",
    });
    await coord.start();
    coord.reportZones(new Map([["fb", { peers: { connected: 5, meshes: 1, relayed: 2 } }]]));
    try {
      await eventually("peers in the table", async () =>
        /fb\s+r1\s+P2P\s+\d+\s+2\/2\s+\S+\s+5 \(2 relayed\)/.test((await ctl("status", "-n", ns)).out),
      );
    } finally {
      await coord.close();
    }
  });

  it("flags get reads the flag store directly", async () => {
    const r = await ctl("flags", "get", "-n", ns, "-o", "json");
    const f = JSON.parse(r.out) as { epoch: number; zones: { zone: string; enabled: boolean }[] };
    expect(f.epoch).toBeGreaterThan(0);
    expect(f.zones.map((z) => [z.zone, z.enabled])).toEqual([
      ["fa", true],
      ["fb", true],
      ["tn", false],
    ]);
    const t = await ctl("flags", "get", "-n", ns, "--zone", "fa");
    expect(t.out).toMatch(/fa\s+hybridctl-\w+\s+true\s+false\s+p2p/);
  });

  it("p2p disable --zone refuses to change other zones silently, and goes through with --force", async () => {
    const refused = await ctl("p2p", "disable", "--zone", "fa", "-n", ns);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/also governs fb/);
    const watch = ctlLive("flags", "watch", "-n", ns, "--count", "1");
    // Its starting state printed first: else that could already be the publish it waits for.
    await eventually("the watch's starting state", () => watch.out.length >= 1);
    const forced = await ctl("p2p", "disable", "--zone", "fa", "-n", ns, "--force", "--timeout", "30");
    expect(forced.code).toBe(0);
    expect(pods.get("fa-0")!.current().mode).toBe("server");
    const w = await watch.done;
    expect(w.out.split("\n")).toHaveLength(2); // the state at start, then the publish
    expect(w.out).toMatch(/0 P2P/);
  });

  it("works with the env.sh the local region writes: KUBECONFIG alone (--cluster), or with the flag store", async () => {
    // hack/local-region.sh's flag store is the Region's etcd inside the cluster, so its env.sh
    // exports KUBECONFIG alone: hybridctl follows the rollout through the Zones' status.
    const cluster = await ctlProcess(
      { KUBECONFIG: env.kubeconfig! },
      ...["p2p", "enable", "--selector", "tier=field", "-n", ns, "--timeout", "30"],
    );
    expect(cluster.err).toMatch(/following the Zones' status/);
    expect(cluster.out).toMatch(/applied: every replica of 2 zones runs epoch \d+/);
    expect(cluster.code).toBe(0);
    expect(pods.get("fb-1")!.current().mode).toBe("p2p");
    // `npm run local -- up` also exports HYBRIDP2P_NATS_URL: the acks there are followed.
    const light = await ctlProcess(
      envVars(env),
      ...["p2p", "disable", "--selector", "tier=field", "-n", ns, "--timeout", "30", "--prefix", prefix],
    );
    expect(light.err).not.toMatch(/following the Zones' status/);
    expect(light.out).toMatch(/applied: every replica of 2 zones runs epoch \d+/);
    expect(light.code).toBe(0);
    expect(pods.get("fb-1")!.current().mode).toBe("server");
  });

  it("stops at the timeout and names the replicas that are missing", async () => {
    await pods.get("fb-1")!.close(); // one replica of fb is gone: its goodbye drops its report
    // Long enough for the publish and the acks of every replica still there on a busy machine.
    const r = await ctl("p2p", "enable", "--selector", "tier=field", "-n", ns, "--timeout", "10");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /timed out after 10s at epoch \d+; missing:\n {2}fb: 1 of 2 replicas at epoch \d+; 1 replicas not reporting/,
    );
    expect(r.err).not.toMatch(/ fa:/);
  });

  it("names a zone that does not exist instead of failing with the API's error", async () => {
    const r = await ctl("fallback", "force", "--zone", "nope", "--reason", "drill", "-n", ns);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`zones "nope" not found in namespace "${ns}"`);
  });

  it("fallback force and clear on a zone", async () => {
    const f = await ctl("fallback", "force", "--zone", "fa", "--reason", "drill", "-n", ns);
    expect(f.code).toBe(0);
    await eventually("fa in Fallback", async () => (await zoneStatus("fa"))?.mode === "Fallback");
    expect((await zoneStatus("fa"))!.fallbackReason).toMatch(/drill/);
    expect(pods.get("fa-0")!.current().mode).toBe("fallback");
    const c = await ctl("fallback", "clear", "--zone", "fa", "-n", ns);
    expect(c.code).toBe(0);
    await eventually("fa back to P2P", async () => (await zoneStatus("fa"))?.mode === "P2P");
    const s = await ctl("fallback", "force", "--service", "coordinator", "--region", "r1", "-n", ns);
    expect(s.code).toBe(0);
    const g = await eventually("coordinator forced in the flags", async () => {
      const r = await ctl("flags", "get", "-n", ns, "-o", "json");
      const doc = (
        JSON.parse(r.out) as { zones: { zone: string; services: Record<string, { fallback: boolean }> }[] }
      ).zones.find((z) => z.zone === "fa");
      return doc?.services.coordinator?.fallback === true ? doc : undefined;
    });
    expect(g.services["map-server"]!.fallback).toBe(false);
  });
});
