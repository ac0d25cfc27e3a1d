// The contract between render and the workloads: the environment the operator gives each pod
// (its ConfigMap plus literal and downward-API variables) passes that workload's own config
// check, so a renamed variable on either side fails here rather than in a crash-looping pod.
import { describe, expect, it } from "vitest";
import type { Region, Zone } from "../operator/api/index.ts";
import { renderRegion } from "../operator/render/region.ts";
import { renderZone } from "../operator/render/zone.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { charConfigFromEnv } from "../workloads/char-server/config.ts";
import { readConfig as readCoordinatorConfig } from "../workloads/coordinator/main.ts";
import { gatewayConfigFromEnv } from "../workloads/gateway/config.ts";
import { loginConfigFromEnv } from "../workloads/login-server/config.ts";
import { mapServerConfigFromEnv } from "../workloads/map-server/config.ts";
import { EnvReader } from "../workloads/runtime/config.ts";

const meta = (name: string) => ({ name, namespace: "demo", uid: `uid-${name}`, generation: 1 });
const region: Region = {
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Region",
  metadata: meta("demo"),
  spec: {},
};
const zone: Zone = {
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Zone",
  metadata: meta("fields"),
  spec: { regionRef: { name: "demo" }, maps: [{ name: "prt_fild08", type: "Field" }] },
};

// biome-ignore lint/suspicious/noExplicitAny: walks rendered objects
type Any = any;

/** The environment a pod of this workload would see (Secret values stand in as placeholders). */
function podEnv(objs: KubeObject[], workloadName: string): Record<string, string> {
  const w = objs.find(
    (o) => (o.kind === "Deployment" || o.kind === "StatefulSet") && o.metadata.name === workloadName,
  ) as Any;
  if (!w) throw new Error(`${workloadName} not rendered`);
  const container = w.spec.template.spec.containers[0];
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const cm = objs.find((o) => o.kind === "ConfigMap" && o.metadata.name === from.configMapRef.name) as Any;
    Object.assign(env, cm.data);
  }
  for (const e of container.env ?? [])
    env[e.name] = e.value ?? (e.valueFrom?.fieldRef ? "demo-pod-0" : "secret-value");
  return env;
}

describe("rendered pod environment against each workload's config check", () => {
  const regionObjs = renderRegion(region);
  const zoneObjs = renderZone(zone, region);

  it("satisfies the gateway", () => {
    const cfg = gatewayConfigFromEnv(podEnv(regionObjs, "demo-gateway"));
    expect(cfg.port).toBe(7000);
    expect(cfg.keysetFile).toBe("/etc/hybridp2p/auth/keyset.json");
  });

  it("satisfies the coordinator", () => {
    const r = new EnvReader(podEnv(regionObjs, "demo-coordinator"));
    const cfg = readCoordinatorConfig(r);
    r.done();
    expect(cfg.keysetFile).toBe("/etc/hybridp2p/auth/keyset.json");
  });

  it("satisfies the login server", () => {
    expect(loginConfigFromEnv(podEnv(regionObjs, "demo-login-server")).port).toBe(6900);
  });

  it("satisfies the char server, which hands out the gateway's address", () => {
    const env = podEnv(regionObjs, "demo-char-server");
    expect(charConfigFromEnv(env).port).toBe(6121);
    expect(env.HYBRIDP2P_GATEWAY_ADDRESS).toBe("demo-gateway.demo.svc:7000");
  });

  it("satisfies the map server with the zone's maps", () => {
    const cfg = mapServerConfigFromEnv(podEnv(zoneObjs, "fields-map-server"));
    expect(cfg).toMatchObject({ zone: "fields", maps: ["prt_fild08"] });
    expect(cfg.runtime.region).toBe("demo");
  });

  it("mounts the region's keyset Secret where the token workloads read it", () => {
    for (const name of ["demo-gateway", "demo-coordinator", "demo-login-server", "demo-char-server"]) {
      const spec = (regionObjs.find((o) => o.kind === "Deployment" && o.metadata.name === name) as Any).spec
        .template.spec;
      expect(spec.volumes).toContainEqual({
        name: "auth-keyset",
        secret: { secretName: "demo-auth-keyset", optional: true },
      });
      expect(spec.containers[0].volumeMounts).toContainEqual({
        name: "auth-keyset",
        mountPath: "/etc/hybridp2p/auth",
        readOnly: true,
      });
    }
  });
});
