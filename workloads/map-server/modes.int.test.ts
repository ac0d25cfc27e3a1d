// The map server follows the flag plane: a P2PPolicy publish turns its maps to p2p mode, a
// workload-detected failure puts them in fallback, and the pod reports its mode under its lease.
import { describe, expect, inject, it } from "vitest";
import { decode, type OwnerNotice, subjects } from "../../platform/bus/contract.ts";
import { FlagClient } from "../../platform/flags/client.ts";
import { connectFlagStore } from "../../platform/flags/etcd.ts";
import { silentLogger } from "../../platform/log.ts";
import { connectNats } from "../../platform/stores/access.ts";
import { compile, FlagPublisher, reportsOn } from "../../testkit/flags.ts";
import { servicesFrom, startTestServer, unique, until } from "../../testkit/map-server/harness.ts";
import { flagModes } from "./modes.ts";

const svc = servicesFrom(inject("localEnv"));

function world(ns: string, zone: string, enabled: boolean) {
  return compile({
    policies: [
      {
        metadata: { name: "fields", namespace: ns },
        spec: {
          zoneSelector: {},
          enabled,
          transports: ["webrtc"],
          recovery: { mode: "Auto", backoff: { initialSeconds: 0, maxSeconds: 1 } },
        },
      },
    ],
    zones: [
      {
        metadata: { name: zone, namespace: ns },
        spec: { regionRef: "r1", maps: [{ name: "prt_fild08", type: "Field" }] },
      },
    ],
    regions: [{ metadata: { name: "r1", namespace: ns } }],
  });
}

describe("map server modes", () => {
  it("follows the flag snapshot (server, p2p, fallback) and reports its mode", async () => {
    const prefix = `/${unique("modes")}/v1/`;
    const ns = unique("ns");
    const zone = unique("z");
    const region = "mtest";
    const etcd = connectFlagStore(svc.etcd);
    const pub = new FlagPublisher({ client: etcd, identity: "op", prefix });
    await pub.acquire();
    await pub.publish(world(ns, zone, false));
    const nc = await connectNats(svc.nats);
    const reports = await reportsOn(nc, prefix, ns);
    const flags = new FlagClient({
      client: etcd,
      nats: nc,
      prefix,
      namespace: ns,
      zone,
      service: "map-server",
      pod: "pod-m",
      log: silentLogger(),
    });
    await flags.start();
    const notices: OwnerNotice[] = [];
    nc.subscribe(subjects.ownersForRegion(region), {
      callback: (err, m) => {
        if (!err) notices.push(decode<OwnerNotice>(m.data));
      },
    });
    await nc.flush();
    const ts = await startTestServer(svc, {
      region,
      zone,
      pod: "pod-m",
      maps: ["prt_fild08"],
      prefix,
      manualTick: true,
      modes: flagModes(flags),
    });
    const report = async () => reports.zoneReports(ns, zone).find((r) => r.pod === "pod-m");
    const modeAfterTicks = async (want: string) =>
      until(`mode ${want}`, async () => {
        await ts.server.step();
        return ts.server.sim("prt_fild08")?.mode === want ? true : undefined;
      });
    try {
      await until("map owned", () => ts.owns("prt_fild08"));
      await modeAfterTicks("server");

      const { epoch } = await pub.publish(world(ns, zone, true));
      await modeAfterTicks("p2p");
      await until("p2p notice", () => notices.find((n) => n.mode === "p2p" && n.owner === "pod-m"));
      const r = await until("p2p report", async () => {
        const r = await report();
        return r?.mode === "p2p" && r.epoch === epoch ? r : undefined;
      });
      expect(r).toMatchObject({ service: "map-server", zone, pod: "pod-m" });
      expect(ts.server.sim("prt_fild08")!.mode).toBe("p2p");

      flags.trigger("coordinator", "coordinator unreachable");
      await modeAfterTicks("fallback");
      await until("fallback notice", () => notices.find((n) => n.mode === "fallback"));
      await until("fallback report", async () => ((await report())?.mode === "fallback" ? true : undefined));

      flags.clearTrigger("coordinator");
      await pub.publish(world(ns, zone, false));
      await modeAfterTicks("server");
    } finally {
      await ts.close();
      await flags.close();
      reports.close();
      await nc.close();
      etcd.close();
    }
  }, 120_000);
});
