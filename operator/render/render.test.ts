import { describe, expect, it } from "vitest";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { Region, Zone } from "../api/index.ts";
import { HEALTH_PORT, METRICS_PORT } from "./constants.ts";
import { renderRegion } from "./region.ts";
import { planRegionSecrets } from "./secrets.ts";
import { natsConfig, natsRoles, storeAddress } from "./stores.ts";
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

const SECRETS = {
  natsPasswords: Object.fromEntries(natsRoles().map((r) => [r, `pw-${r}`])),
};

describe("renderRegion", () => {
  const objs = renderRegion(region(), SECRETS);

  it("renders the six objects of each component, three per managed store and their configuration", () => {
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
    expect(names.filter((n) => n.startsWith("Secret/demo-nats-config-"))).toHaveLength(1);
    expect(names).toContain("ConfigMap/demo-postgres-hba");
    expect(objs).toHaveLength(4 * 6 + 4 * 3 + 2);
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
      HYBRIDP2P_ETCD_ENDPOINTS: "https://demo-etcd.demo.svc:2379",
      HYBRIDP2P_NATS_URL: "nats://demo-nats.demo.svc:4222",
      HYBRIDP2P_REDIS_URL: "rediss://demo-dragonfly.demo.svc:6379",
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
    const login = find(out, "Deployment", "demo-login-server").spec.template.spec.containers[0];
    expect(login.env).toContainEqual({
      name: "HYBRIDP2P_POSTGRES_PASSWORD",
      valueFrom: { secretKeyRef: { name: "pg-app", key: "password" } },
    });
    const c = find(out, "Deployment", "demo-gateway").spec.template.spec.containers[0];
    // The gateway uses no PostgreSQL: it gets no credentials for it.
    expect(c.env.map((e: Any) => e.name)).not.toContain("HYBRIDP2P_POSTGRES_PASSWORD");
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

describe("secure by default", () => {
  const objs = renderRegion(region(), SECRETS);
  const container = (kind: string, name: string, list = objs) =>
    find(list, kind, name).spec.template.spec.containers[0];
  const podVolumes = (kind: string, name: string, list = objs) =>
    Object.fromEntries(find(list, kind, name).spec.template.spec.volumes.map((v: Any) => [v.name, v]));
  const envOf = (c: Any) => Object.fromEntries(c.env.map((e: Any) => [e.name, e.value ?? e.valueFrom]));

  it("runs etcd on https with client-certificate auth against the Region's CA", () => {
    const c = container("StatefulSet", "demo-etcd");
    expect(c.args).toEqual(
      expect.arrayContaining([
        "--client-cert-auth",
        "--listen-client-urls=https://0.0.0.0:2379",
        "--advertise-client-urls=https://demo-etcd.demo.svc:2379",
        "--trusted-ca-file=/etc/hybridp2p/tls/server/ca.crt",
        "--cert-file=/etc/hybridp2p/tls/server/tls.crt",
        "--key-file=/etc/hybridp2p/tls/server/tls.key",
      ]),
    );
    expect(c.args.join(" ")).not.toMatch(/http:\/\/0\.0\.0\.0/);
    expect(podVolumes("StatefulSet", "demo-etcd")["server-tls"].secret.secretName).toBe(
      "demo-etcd-server-tls",
    );
  });

  it("runs NATS from a configuration with a user per role, its permissions and TLS", () => {
    expect(container("StatefulSet", "demo-nats").args).toEqual(["-c", "/etc/nats/nats.conf"]);
    const secret: Any = objs.find(
      (o) => o.kind === "Secret" && o.metadata.name.startsWith("demo-nats-config-"),
    );
    expect(secret.immutable).toBe(true);
    expect(podVolumes("StatefulSet", "demo-nats").config.secret.secretName).toBe(secret.metadata.name);
    const conf = Buffer.from(secret.data["nats.conf"], "base64").toString();
    expect(conf).toBe(natsConfig(region(), SECRETS.natsPasswords));
    expect(conf).toContain('user: "hybridp2p-gateway@demo", password: "pw-gateway"');
    expect(conf).toContain('user: "hybridp2p-operator", password: "pw-operator"');
    expect(conf).toContain('user: "hybridp2p-orchestrator@demo"');
    expect(conf).not.toContain("login-server");
    expect(conf).toMatch(/tls \{[^}]*cert_file: "\/etc\/hybridp2p\/tls\/server\/tls.crt"/);
    // Every user has permissions: none is an administrator.
    for (const line of conf.split("\n").filter((l) => l.includes("user:")))
      expect(line).toContain("permissions");
    // New passwords roll the pod (its configuration changed).
    const again = renderRegion(region(), { natsPasswords: { ...SECRETS.natsPasswords, gateway: "other" } });
    const hash = (o: KubeObject[]) => find(o, "StatefulSet", "demo-nats").spec.template.metadata.annotations;
    expect(hash(again)).not.toEqual(hash(objs));
    // Without the passwords the configuration is left out, never made up.
    expect(renderRegion(region()).some((o) => o.kind === "Secret")).toBe(false);
  });

  it("runs PostgreSQL with a scram password and TCP over TLS only", () => {
    const c = container("StatefulSet", "demo-postgres");
    const env = envOf(c);
    expect(env.POSTGRES_PASSWORD).toEqual({
      secretKeyRef: { name: "demo-postgres-credentials", key: "password" },
    });
    expect(env.POSTGRES_HOST_AUTH_METHOD).toBeUndefined();
    expect(c.args).toEqual(expect.arrayContaining(["ssl=on", "password_encryption=scram-sha-256"]));
    const hba = find(objs, "ConfigMap", "demo-postgres-hba").data["pg_hba.conf"];
    const rules = hba.split("\n").filter((l: string) => l && !l.startsWith("#"));
    expect(rules).toEqual(["local all all scram-sha-256", "hostssl all all all scram-sha-256"]);
    // PostgreSQL refuses a key others can read: root-owned, group (fsGroup) read only.
    expect(podVolumes("StatefulSet", "demo-postgres")["server-tls"].secret.defaultMode).toBe(0o640);
  });

  it("runs Dragonfly with a password from its Secret and TLS", () => {
    const c = container("StatefulSet", "demo-dragonfly");
    expect(envOf(c).DFLY_requirepass).toEqual({
      secretKeyRef: { name: "demo-dragonfly-credentials", key: "password" },
    });
    expect(c.args).toEqual(
      expect.arrayContaining(["--tls", "--tls_cert_file=/etc/hybridp2p/tls/server/tls.crt"]),
    );
    expect(c.args.join(" ")).not.toContain("requirepass");
  });

  it("gives each component its own store identity, and credentials only for the stores it uses", () => {
    const gw = container("Deployment", "demo-gateway");
    const gwEnv = envOf(gw);
    const cm = find(objs, "ConfigMap", "demo-gateway").data;
    expect(cm).toMatchObject({
      HYBRIDP2P_ETCD_TLS_DIR: "/etc/hybridp2p/tls/etcd",
      HYBRIDP2P_NATS_USERNAME: "hybridp2p-gateway@demo",
      HYBRIDP2P_NATS_TLS_DIR: "/etc/hybridp2p/tls/nats",
      HYBRIDP2P_DRAGONFLY_TLS_DIR: "/etc/hybridp2p/tls/dragonfly",
    });
    expect(gwEnv.HYBRIDP2P_NATS_PASSWORD).toEqual({
      secretKeyRef: { name: "demo-nats-credentials", key: "gateway" },
    });
    expect(gwEnv.HYBRIDP2P_DRAGONFLY_PASSWORD).toEqual({
      secretKeyRef: { name: "demo-dragonfly-credentials", key: "password" },
    });
    expect(gwEnv.HYBRIDP2P_POSTGRES_PASSWORD).toBeUndefined();
    const vols = podVolumes("Deployment", "demo-gateway");
    expect(vols["tls-etcd"].secret).toEqual({ secretName: "demo-etcd-gateway-tls" });
    // Password clients get the CA certificate alone, never the CA's key.
    expect(vols["tls-nats"].secret).toEqual({
      secretName: "demo-ca",
      items: [{ key: "ca.crt", path: "ca.crt" }],
    });

    const login = envOf(container("Deployment", "demo-login-server"));
    expect(login.HYBRIDP2P_POSTGRES_USERNAME).toEqual({
      secretKeyRef: { name: "demo-postgres-credentials", key: "username" },
    });
    expect(login.HYBRIDP2P_NATS_PASSWORD).toBeUndefined();
    expect(podVolumes("Deployment", "demo-login-server")["tls-etcd"]).toBeUndefined();

    const zoneObjs = renderZone(zone(), region());
    const ms = container("StatefulSet", "fields-map-server", zoneObjs);
    expect(envOf(ms).HYBRIDP2P_NATS_PASSWORD).toEqual({
      secretKeyRef: { name: "demo-nats-credentials", key: "map-server" },
    });
    expect(podVolumes("StatefulSet", "fields-map-server", zoneObjs)["tls-etcd"].secret.secretName).toBe(
      "demo-etcd-map-server-tls",
    );
  });

  it("keeps every password out of pod specs and ConfigMaps (only the NATS configuration Secret lists them)", () => {
    const text = JSON.stringify(objs.filter((o) => o.kind !== "Secret"));
    expect(text).not.toContain("pw-");
  });

  it("mounts the serving certificate into every client-facing component, or none when TLS is off", () => {
    for (const c of ["gateway", "coordinator", "login-server", "char-server"]) {
      expect(find(objs, "ConfigMap", `demo-${c}`).data.HYBRIDP2P_SERVING_TLS_DIR).toBe(
        "/etc/hybridp2p/tls/serving",
      );
      expect(podVolumes("Deployment", `demo-${c}`)["serving-tls"].secret).toEqual({
        secretName: "demo-serving-tls",
      });
      expect(container("Deployment", `demo-${c}`).volumeMounts).toContainEqual({
        name: "serving-tls",
        mountPath: "/etc/hybridp2p/tls/serving",
        readOnly: true,
      });
    }
    const own = renderRegion(region({ tls: { secretName: "cert-manager-made" } }), SECRETS);
    expect(podVolumes("Deployment", "demo-gateway", own)["serving-tls"].secret.secretName).toBe(
      "cert-manager-made",
    );
    const off = renderRegion(region({ tls: { mode: "Disabled" } }), SECRETS);
    expect(find(off, "ConfigMap", "demo-gateway").data.HYBRIDP2P_SERVING_TLS_DIR).toBeUndefined();
    expect(podVolumes("Deployment", "demo-gateway", off)["serving-tls"]).toBeUndefined();
  });
});

describe("planRegionSecrets", () => {
  it("plans the CA first, the serving certificate, and per managed store its certificates and credentials", () => {
    const plans = planRegionSecrets(region());
    expect(plans[0]).toMatchObject({ kind: "ca", name: "demo-ca" });
    expect(plans.map((p) => p.name).sort()).toEqual(
      [
        "demo-ca",
        "demo-serving-tls",
        ...["etcd", "nats", "postgres", "dragonfly"].flatMap((s) => [
          `demo-${s}-server-tls`,
          `demo-${s}-credentials`,
        ]),
        ...["root", "operator", "gateway", "coordinator", "map-server"].map((r) => `demo-etcd-${r}-tls`),
      ].sort(),
    );
    const serving = plans.find((p) => p.name === "demo-serving-tls") as Any;
    expect(serving.hosts).toEqual(
      expect.arrayContaining([
        "demo-gateway.demo.svc",
        "demo-login-server.demo.svc.cluster.local",
        "localhost",
      ]),
    );
    const cn = (name: string) => (plans.find((p) => p.name === name) as Any).commonName;
    expect(cn("demo-etcd-root-tls")).toBe("root");
    expect(cn("demo-etcd-operator-tls")).toBe("hybridp2p-operator");
    expect(cn("demo-etcd-map-server-tls")).toBe("hybridp2p-map-server@demo");
    expect(plans.find((p) => p.name === "demo-nats-credentials")).toMatchObject({
      random: ["operator", "orchestrator", "gateway", "coordinator", "map-server"],
    });
  });

  it("plans nothing for a Region with its own certificate and only external stores", () => {
    const ext = (e: string) => ({ mode: "External" as const, external: { endpoints: [e] } });
    const r = region({
      tls: { secretName: "mine" },
      dataStores: {
        etcd: ext("e:2379"),
        nats: ext("n:4222"),
        postgres: ext("p:5432"),
        dragonfly: ext("d:6379"),
      },
    });
    expect(planRegionSecrets(r)).toEqual([]);
    // Its named Secret is a reference the Region waits for.
    expect(
      planRegionSecrets(region({ tls: { mode: "Disabled" } })).some((p) => p.name === "demo-serving-tls"),
    ).toBe(false);
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
