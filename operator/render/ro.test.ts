// The Region's RO endpoints and map cache, rendered.
import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { type Region, RegionSpec, type Zone } from "../api/index.ts";
import { renderRegion } from "./region.ts";
import { RO_CONTAINER_PORTS } from "./ro.ts";
import { renderZone } from "./zone.ts";

const meta = (name: string) => ({ name, namespace: "demo", uid: `uid-${name}`, generation: 1 });
const region = (spec: Region["spec"] = {}): Region => ({
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Region",
  metadata: meta("demo"),
  spec,
});
const zone: Zone = {
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Zone",
  metadata: meta("fields"),
  spec: { regionRef: { name: "demo" }, maps: [{ name: "prt_fild08", type: "Field" }] },
};
// biome-ignore lint/suspicious/noExplicitAny: tests walk rendered objects freely
type Any = any;
const find = (objs: KubeObject[], kind: string, name: string): Any =>
  objs.find((x) => x.kind === kind && x.metadata.name === name);
const config = (objs: KubeObject[], name: string) =>
  find(objs, "ConfigMap", name).data as Record<string, string>;

const nodePorts: Region["spec"] = {
  ro: {
    enabled: true,
    serviceType: "NodePort",
    publicAddress: "192.0.2.10",
    login: { nodePort: 30690 },
    char: { nodePort: 30612 },
    map: { nodePort: 30512 },
  },
};

describe("RO endpoints", () => {
  it("are off by default: no RO Services, ports or settings", () => {
    const objs = renderRegion(region());
    expect(objs.filter((o) => o.metadata.name.includes("-ro-"))).toEqual([]);
    for (const n of ["demo-login-server", "demo-char-server", "demo-gateway"])
      expect(Object.keys(config(objs, n)).filter((k) => k.includes("_RO_"))).toEqual([]);
  });

  it("render a Service per endpoint and tell each server the node ports clients reach", () => {
    const objs = renderRegion(region(nodePorts));
    const svc = (e: string) => find(objs, "Service", `demo-ro-${e}`);
    expect(svc("login").spec).toMatchObject({
      type: "NodePort",
      ports: [{ port: 6900, nodePort: 30690, targetPort: "ro-login" }],
    });
    expect(svc("char").spec.selector["app.kubernetes.io/component"]).toBe("char-server");
    expect(svc("map").spec.selector["app.kubernetes.io/component"]).toBe("gateway");
    expect(config(objs, "demo-login-server")).toMatchObject({
      HYBRIDP2P_RO_LOGIN_PORT: String(RO_CONTAINER_PORTS.login),
      HYBRIDP2P_RO_CHAR_ADDRESS: "192.0.2.10:30612",
      HYBRIDP2P_RO_SERVER_NAME: "demo",
    });
    expect(config(objs, "demo-char-server")).toMatchObject({
      HYBRIDP2P_RO_CHAR_PORT: String(RO_CONTAINER_PORTS.char),
      HYBRIDP2P_RO_MAP_ADDRESS: "192.0.2.10:30512",
    });
    expect(config(objs, "demo-gateway")).toMatchObject({
      HYBRIDP2P_RO_MAP_PORT: String(RO_CONTAINER_PORTS.map),
    });
    const gw = find(objs, "Deployment", "demo-gateway").spec.template.spec.containers[0];
    expect(gw.ports).toContainEqual({ name: "ro-map", containerPort: RO_CONTAINER_PORTS.map });
    const np = find(objs, "NetworkPolicy", "demo-gateway").spec.ingress;
    expect(np).toContainEqual({ ports: [{ port: RO_CONTAINER_PORTS.map, protocol: "TCP" }] });
  });

  it("tell clients the Service port behind a load balancer", () => {
    const objs = renderRegion(
      region({
        ro: {
          enabled: true,
          serviceType: "LoadBalancer",
          publicAddress: "ro.example.org",
          char: { port: 7121 },
        },
      }),
    );
    expect(config(objs, "demo-login-server").HYBRIDP2P_RO_CHAR_ADDRESS).toBe("ro.example.org:7121");
    expect(config(objs, "demo-char-server").HYBRIDP2P_RO_MAP_ADDRESS).toBe("ro.example.org:5121");
  });

  it("default to NodePort, which needs the node ports", () => {
    const spec = Value.Default(RegionSpec, { ro: { enabled: true } }) as Region["spec"];
    expect(spec.ro).toMatchObject({ serviceType: "NodePort", login: { port: 6900 }, char: { port: 6121 } });
  });
});

describe("map cache", () => {
  it("mounts the Region's ConfigMap into the map servers and names the file", () => {
    const r = region({ mapCache: { configMap: { name: "ro-maps" } } });
    const sts = renderZone(zone, r).find((o) => o.kind === "StatefulSet") as Any;
    const pod = sts.spec.template.spec;
    expect(pod.volumes).toContainEqual({
      name: "map-cache",
      configMap: { name: "ro-maps", items: [{ key: "map_cache.dat", path: "map_cache.dat" }] },
    });
    expect(pod.containers[0].env).toContainEqual({
      name: "HYBRIDP2P_MAP_CACHE",
      value: "/etc/hybridp2p/maps/map_cache.dat",
    });
  });

  it("is absent without one", () => {
    const sts = renderZone(zone, region()).find((o) => o.kind === "StatefulSet") as Any;
    expect(JSON.stringify(sts)).not.toContain("map-cache");
  });
});
