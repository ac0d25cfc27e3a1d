import { describe, expect, it } from "vitest";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { Region, Zone } from "../api/index.ts";
import { HEALTH_PORT, METRICS_PORT } from "./constants.ts";
import { renderRegion } from "./region.ts";
import { storeAddress } from "./stores.ts";
import { renderZone } from "./zone.ts";

const meta = (name: string) => ({ name, namespace: "demo", uid: `uid-${name}`, generation: 1 });
const region = (spec: Region["spec"] = {}): Region => ({
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Region",
  metadata: meta("demo"),
  spec,
});
const zone = (spec: Partial<Zone["spec"]> = {}): Zone => ({
  apiVersion: "hybridp2p.io/v1alpha1",
  kind: "Zone",
  metadata: meta("fields"),
  spec: {
    regionRef: { name: "demo" },
    maps: [
      { name: "prt_fild08", type: "Field" },
      { name: "prt_fild07", type: "Field" },
    ],
    ...spec,
  },
});

// biome-ignore lint/suspicious/noExplicitAny: tests walk rendered objects freely
type Any = any;
const find = (objs: KubeObject[], kind: string, name: string): Any => {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o) throw new Error(`${kind} ${name} not rendered`);
  return o;
};
const podSpecs = (objs: KubeObject[]): Any[] =>
  objs
    .filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet")
    .map((o: Any) => o.spec.template.spec);

describe("renderRegion", () => {
  const objs = renderRegion(region());

  it("renders the six objects of each component and three per managed store", () => {
    const names = objs.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    for (const c of ["gateway", "coordinator", "login-server", "char-server"]) {
      for (const k of [
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
      ]) {
        expect(names).toContain(`${k}/demo-${c}`);
      }
    }
    for (const s of ["etcd", "nats", "postgres", "dragonfly"]) {
      for (const k of ["StatefulSet", "Service", "NetworkPolicy"]) expect(names).toContain(`${k}/demo-${s}`);
    }
    expect(objs).toHaveLength(4 * 6 + 4 * 3);
  });

  it("gives every child a controller owner reference, the namespace and the standard labels", () => {
    for (const o of objs) {
      expect(o.metadata.namespace).toBe("demo");
      expect(o.metadata.ownerReferences).toEqual([
        {
          apiVersion: "hybridp2p.io/v1alpha1",
          kind: "Region",
          name: "demo",
          uid: "uid-demo",
          controller: true,
          blockOwnerDeletion: true,
        },
      ]);
      expect(Object.keys(o.metadata.labels ?? {})).toEqual(
        expect.arrayContaining([
          "app.kubernetes.io/name",
          "app.kubernetes.io/instance",
          "app.kubernetes.io/component",
          "app.kubernetes.io/part-of",
          "app.kubernetes.io/managed-by",
        ]),
      );
    }
  });

  it("hardens every pod and sets requests, limits and probes", () => {
    for (const pod of podSpecs(objs)) {
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: "RuntimeDefault" },
      });
      expect(pod.automountServiceAccountToken).toBe(false);
      for (const c of pod.containers) {
        expect(c.securityContext).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          capabilities: { drop: ["ALL"] },
        });
        expect(Object.keys(c.resources.requests)).toEqual(expect.arrayContaining(["cpu", "memory"]));
        expect(c.resources.limits.memory).toBeDefined();
        expect(c.livenessProbe).toBeDefined();
        expect(c.readinessProbe).toBeDefined();
      }
    }
  });

  it("starts workloads from one image with a subcommand, probes on the health port", () => {
    const d = find(objs, "Deployment", "demo-gateway");
    const c = d.spec.template.spec.containers[0];
    expect(c.image).toBe("ghcr.io/hybrid-p2p/workload:0.1.0");
    expect(c.command).toEqual(["node", "workloads/main.ts", "gateway"]);
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: HEALTH_PORT });
    expect(c.ports.map((p: Any) => p.containerPort)).toEqual([7000, HEALTH_PORT, METRICS_PORT]);
    expect(c.env.map((e: Any) => e.name)).toEqual(expect.arrayContaining(["POD_NAME", "POD_NAMESPACE"]));
  });

  it("wires managed store addresses through the component ConfigMaps", () => {
    const cm = find(objs, "ConfigMap", "demo-char-server");
    expect(cm.data).toMatchObject({
      HYBRIDP2P_REGION: "demo",
      HYBRIDP2P_ETCD_ENDPOINTS: "http://demo-etcd.demo.svc:2379",
      HYBRIDP2P_NATS_URL: "nats://demo-nats.demo.svc:4222",
      HYBRIDP2P_REDIS_URL: "redis://demo-dragonfly.demo.svc:6379",
      HYBRIDP2P_DATABASE_URL: "postgres://hybridp2p@demo-postgres.demo.svc:5432/hybridp2p",
    });
    expect(find(objs, "StatefulSet", "demo-dragonfly").spec.template.spec.containers[0].image).toMatch(
      /^docker\.dragonflydb\.io\/dragonflydb\/dragonfly:/,
    );
  });

  it("lets drains evict pods that are not healthy, and one healthy pod at a time", () => {
    const pdbs = objs.filter((o: Any) => o.kind === "PodDisruptionBudget");
    expect(pdbs.length).toBeGreaterThan(0);
    for (const p of pdbs) {
      expect(p.spec).toMatchObject({ maxUnavailable: 1, unhealthyPodEvictionPolicy: "AlwaysAllow" });
    }
  });

  it("admits only the traffic each piece needs", () => {
    const components = (peers: Any[]) =>
      peers
        .filter((f: Any) => !f.namespaceSelector)
        .map((f: Any) => {
          expect(f.podSelector.matchLabels["hybridp2p.io/region"]).toBe("demo");
          return f.podSelector.matchLabels["app.kubernetes.io/component"];
        })
        .sort();
    // Players call every component's service port directly: login and char as much as the gateway.
    for (const c of ["gateway", "coordinator", "login-server", "char-server"]) {
      const np = find(objs, "NetworkPolicy", `demo-${c}`).spec;
      expect(np.policyTypes).toEqual(["Ingress"]);
      expect(np.ingress[0].from, c).toBeUndefined();
      expect(np.ingress[0].ports[0].port, c).toBe(find(objs, "Service", `demo-${c}`).spec.ports[0].port);
    }
    // Each store admits the components whose config reads it, and nothing else of the region.
    expect(components(find(objs, "NetworkPolicy", "demo-postgres").spec.ingress[0].from)).toEqual([
      "char-server",
      "login-server",
      "map-server",
    ]);
    expect(components(find(objs, "NetworkPolicy", "demo-nats").spec.ingress[0].from)).toEqual([
      "coordinator",
      "gateway",
      "map-server",
    ]);
    expect(components(find(objs, "NetworkPolicy", "demo-dragonfly").spec.ingress[0].from)).toEqual([
      "char-server",
      "coordinator",
      "gateway",
      "login-server",
      "map-server",
    ]);
    const etcd = find(objs, "NetworkPolicy", "demo-etcd").spec.ingress[0].from;
    expect(components(etcd)).toEqual(["coordinator", "gateway", "map-server"]);
    // ...and the operator, from its own namespace, publishes flags there and hears the reports on NATS.
    for (const store of ["demo-etcd", "demo-nats"]) {
      const from = find(objs, "NetworkPolicy", store).spec.ingress[0].from;
      expect(from.find((f: Any) => f.namespaceSelector)?.podSelector.matchLabels).toEqual({
        "app.kubernetes.io/name": "hybrid-operator",
      });
    }
  });

  it("passes external stores as endpoints plus Secret references and renders no StatefulSet for them", () => {
    const r = region({
      dataStores: {
        postgres: {
          mode: "External",
          external: { endpoints: ["pg.prod:5432"], secretRef: { name: "pg-app", key: "password" } },
        },
        etcd: {
          mode: "External",
          external: { endpoints: ["https://e1:2379", "https://e2:2379"], tlsSecretRef: { name: "etcd-tls" } },
        },
      },
    });
    const out = renderRegion(r);
    expect(out.some((o) => o.metadata.name === "demo-postgres")).toBe(false);
    expect(out.some((o) => o.metadata.name === "demo-etcd")).toBe(false);
    expect(storeAddress(r, "postgres")).toBe("postgres://pg.prod:5432/hybridp2p");
    expect(storeAddress(r, "etcd")).toBe("https://e1:2379,https://e2:2379");
    const c = find(out, "Deployment", "demo-gateway").spec.template.spec.containers[0];
    expect(c.env).toContainEqual({
      name: "HYBRIDP2P_POSTGRES_PASSWORD",
      valueFrom: { secretKeyRef: { name: "pg-app", key: "password" } },
    });
    expect(c.volumeMounts).toContainEqual({
      name: "tls-etcd",
      mountPath: "/etc/hybridp2p/tls/etcd",
      readOnly: true,
    });
  });

  it("is pure: same input, same output; config changes change the pod template hash", () => {
    expect(renderRegion(region())).toEqual(renderRegion(region()));
    const hash = (objs: KubeObject[]) =>
      find(objs, "Deployment", "demo-gateway").spec.template.metadata.annotations;
    const other = renderRegion(
      region({ dataStores: { nats: { mode: "External", external: { endpoints: ["n:4222"] } } } }),
    );
    expect(hash(other)).not.toEqual(hash(renderRegion(region())));
  });
});

describe("renderZone", () => {
  const objs = renderZone(
    zone({ mapServer: { replicas: 3, workerThreads: 4, tickRateHz: 25, maxPlayers: 1200 } }),
    region(),
  );

  it("renders a StatefulSet behind a headless Service, owned by the Zone", () => {
    const sts = find(objs, "StatefulSet", "fields-map-server");
    const svc = find(objs, "Service", "fields-map-server");
    expect(sts.spec.serviceName).toBe(svc.metadata.name);
    expect(svc.spec.clusterIP).toBe("None");
    expect(sts.spec.replicas).toBe(3);
    expect(sts.metadata.ownerReferences[0]).toMatchObject({ kind: "Zone", name: "fields", controller: true });
    expect(sts.metadata.labels).toMatchObject({
      "hybridp2p.io/zone": "fields",
      "hybridp2p.io/region": "demo",
    });
    expect(svc.spec.selector).toEqual(sts.spec.selector.matchLabels);
  });

  it("passes maps, worker threads, tick rate and player cap to the pods", () => {
    const env = Object.fromEntries(
      find(objs, "StatefulSet", "fields-map-server").spec.template.spec.containers[0].env.map((e: Any) => [
        e.name,
        e.value ?? e.valueFrom,
      ]),
    );
    expect(env).toMatchObject({
      HYBRIDP2P_ZONE: "fields",
      HYBRIDP2P_REGION: "demo",
      HYBRIDP2P_MAPS: "prt_fild08,prt_fild07",
      HYBRIDP2P_WORKER_THREADS: "4",
      HYBRIDP2P_TICK_RATE_HZ: "25",
      HYBRIDP2P_MAX_PLAYERS: "1200",
      POD_NAME: { fieldRef: { fieldPath: "metadata.name" } },
    });
  });

  it("fills API defaults for an empty pool", () => {
    const sts = find(renderZone(zone(), region()), "StatefulSet", "fields-map-server");
    expect(sts.spec.replicas).toBe(1);
    const env = sts.spec.template.spec.containers[0].env;
    expect(env).toContainEqual({ name: "HYBRIDP2P_TICK_RATE_HZ", value: "20" });
  });
});
