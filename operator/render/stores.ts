// Data stores, each managed (a single-instance StatefulSet + Service, for development and
// small installs) or external (endpoints plus Secret references, for production). Either
// way the workloads see the same environment variables.
import type { V1EnvVar, V1StatefulSetSpec, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { DataStore, Region } from "../api/index.ts";
import {
  child,
  containerSecurityContext,
  podSecurityContext,
  regionPods,
  resources,
  selectorLabels,
  standardLabels,
  tcpProbes,
} from "./common.ts";
import {
  DEFAULT_RESOURCES,
  DEFAULT_STORAGE,
  ENV,
  LABEL,
  OPERATOR_NAME,
  ORCHESTRATOR_NAME,
  POSTGRES_DB,
  POSTGRES_USER,
  STORE_CLIENTS,
  STORE_NAMES,
  STORES,
  type StoreName,
} from "./constants.ts";

export const storeServiceName = (region: string, store: StoreName): string => `${region}-${store}`;

const urlEnv: Record<StoreName, string> = {
  etcd: ENV.etcdEndpoints,
  nats: ENV.natsUrl,
  postgres: ENV.databaseUrl,
  dragonfly: ENV.redisUrl,
};

const scheme: Record<StoreName, string> = {
  etcd: "http",
  nats: "nats",
  postgres: "postgres",
  dragonfly: "redis",
};

/** The store's spec with the mode defaulted. */
export function storeSpec(region: Region, store: StoreName): DataStore {
  return region.spec.dataStores?.[store] ?? { mode: "Managed" };
}

export const isExternal = (s: DataStore): boolean => s.mode === "External";

/** The client address of a store as its environment variable carries it. */
export function storeAddress(region: Region, store: StoreName): string {
  const spec = storeSpec(region, store);
  if (isExternal(spec)) {
    // Endpoints are URLs or host:port; a bare PostgreSQL host:port gets the default database.
    const eps = (spec.external?.endpoints ?? []).map((e) =>
      /^[a-z][a-z0-9+.-]*:\/\//i.test(e)
        ? e
        : `${scheme[store]}://${e}${store === "postgres" ? `/${POSTGRES_DB}` : ""}`,
    );
    // etcd and NATS clients take a list; Redis and PostgreSQL URLs name one server.
    return store === "etcd" || store === "nats" ? eps.join(",") : (eps[0] ?? "");
  }
  const host = `${storeServiceName(region.metadata!.name!, store)}.${region.metadata!.namespace}.svc`;
  const { port } = STORES[store];
  return store === "postgres"
    ? `postgres://${POSTGRES_USER}@${host}:${port}/${POSTGRES_DB}`
    : `${scheme[store]}://${host}:${port}`;
}

/** Secrets the Region's external stores refer to (the Region is Stalled until they exist). */
export function referencedSecrets(region: Region): Array<{ store: StoreName; name: string }> {
  const out: Array<{ store: StoreName; name: string }> = [];
  for (const store of STORE_NAMES) {
    const spec = storeSpec(region, store);
    if (!isExternal(spec)) continue;
    for (const ref of [spec.external?.secretRef, spec.external?.tlsSecretRef]) {
      if (ref && !out.some((o) => o.name === ref.name && o.store === store))
        out.push({ store, name: ref.name });
    }
  }
  return out;
}

export interface StoreWiring {
  /** Plain addresses, for a ConfigMap or literal env. */
  config: Record<string, string>;
  /** Credentials from the external stores' Secrets. */
  secretEnv: V1EnvVar[];
  volumes: V1Volume[];
  volumeMounts: V1VolumeMount[];
}

/** How a workload reaches every store: addresses, credentials (HYBRIDP2P_<STORE>_USERNAME/_PASSWORD
 * from the Secret, or _PASSWORD from one key of it) and TLS material mounted at
 * /etc/hybridp2p/tls/<store> (HYBRIDP2P_<STORE>_TLS_DIR). */
export function storeWiring(region: Region): StoreWiring {
  const known = wirings.get(region);
  if (known) return known;
  const w: StoreWiring = { config: {}, secretEnv: [], volumes: [], volumeMounts: [] };
  for (const store of STORE_NAMES) {
    w.config[urlEnv[store]] = storeAddress(region, store);
    const spec = storeSpec(region, store);
    if (!isExternal(spec)) continue;
    const prefix = `HYBRIDP2P_${store.toUpperCase()}`;
    const ref = spec.external?.secretRef;
    if (ref?.key) {
      w.secretEnv.push({
        name: `${prefix}_PASSWORD`,
        valueFrom: { secretKeyRef: { name: ref.name, key: ref.key } },
      });
    } else if (ref) {
      for (const k of ["username", "password"]) {
        w.secretEnv.push({
          name: `${prefix}_${k.toUpperCase()}`,
          valueFrom: { secretKeyRef: { name: ref.name, key: k, optional: k === "username" } },
        });
      }
    }
    const tls = spec.external?.tlsSecretRef;
    if (tls) {
      const dir = `/etc/hybridp2p/tls/${store}`;
      w.volumes.push({ name: `tls-${store}`, secret: { secretName: tls.name } });
      w.volumeMounts.push({ name: `tls-${store}`, mountPath: dir, readOnly: true });
      w.config[`${prefix}_TLS_DIR`] = dir;
    }
  }
  wirings.set(region, w);
  return w;
}
// Remembered per Region object, like withRegionDefaults (callers must not mutate the result).
const wirings = new WeakMap<Region, StoreWiring>();

interface StoreContainer {
  command?: string[];
  args?: string[];
  env?: V1EnvVar[];
  dataDir: string;
  /** Writable scratch directories besides /tmp (the root filesystem is read-only). */
  extraMounts: V1VolumeMount[];
}

function storeContainer(store: StoreName, host: string): StoreContainer {
  switch (store) {
    case "etcd":
      return {
        command: ["etcd"],
        args: [
          "--name=etcd-0",
          "--data-dir=/var/lib/etcd/data",
          "--listen-client-urls=http://0.0.0.0:2379",
          `--advertise-client-urls=http://${host}:2379`,
          "--listen-peer-urls=http://127.0.0.1:2380",
          "--initial-advertise-peer-urls=http://127.0.0.1:2380",
          "--initial-cluster=etcd-0=http://127.0.0.1:2380",
        ],
        dataDir: "/var/lib/etcd",
        extraMounts: [],
      };
    case "nats":
      return { args: ["-js", "-sd", "/data", "-p", "4222", "-m", "8222"], dataDir: "/data", extraMounts: [] };
    case "postgres":
      // Development store: trust auth, reachable only from this region's pods (NetworkPolicy).
      return {
        env: [
          { name: "POSTGRES_DB", value: POSTGRES_DB },
          { name: "POSTGRES_USER", value: POSTGRES_USER },
          { name: "POSTGRES_HOST_AUTH_METHOD", value: "trust" },
          { name: "PGDATA", value: "/var/lib/postgresql/data/pgdata" },
        ],
        dataDir: "/var/lib/postgresql/data",
        extraMounts: [{ name: "run", mountPath: "/var/run/postgresql" }],
      };
    case "dragonfly":
      return { args: ["--port=6379", "--dir=/data"], dataDir: "/data", extraMounts: [] };
  }
}

/** A managed store: headless Service + single-instance StatefulSet + NetworkPolicy. */
export function renderManagedStore(region: Region, store: StoreName): KubeObject[] {
  const r = region.metadata!.name!;
  const ns = region.metadata!.namespace!;
  const name = storeServiceName(r, store);
  const spec = storeSpec(region, store);
  const managed = spec.managed ?? {};
  const def = STORES[store];
  const image =
    managed.image ?? (store === "dragonfly" ? (region.spec.images?.dragonfly ?? def.image) : def.image);
  const sel = selectorLabels(store, r, "data-store");
  const labels = standardLabels(sel, { region: r });
  const owner = { apiVersion: region.apiVersion!, kind: region.kind!, metadata: region.metadata! };
  const c = storeContainer(store, `${name}.${ns}.svc`);
  const sts: V1StatefulSetSpec = {
    replicas: 1,
    serviceName: name,
    selector: { matchLabels: sel },
    template: {
      metadata: { labels },
      spec: {
        automountServiceAccountToken: false,
        securityContext: podSecurityContext(def.uid),
        containers: [
          {
            name: store,
            image,
            ...(c.command ? { command: c.command } : {}),
            ...(c.args ? { args: c.args } : {}),
            ...(c.env ? { env: c.env } : {}),
            ports: [{ name: def.portName, containerPort: def.port }],
            resources: resources(managed.resources, DEFAULT_RESOURCES.store),
            ...tcpProbes(def.port),
            securityContext: containerSecurityContext(),
            volumeMounts: [
              { name: "data", mountPath: c.dataDir },
              { name: "tmp", mountPath: "/tmp" },
              ...c.extraMounts,
            ],
          },
        ],
        volumes: [
          { name: "tmp", emptyDir: {} },
          ...c.extraMounts.map((m) => ({ name: m.name, emptyDir: {} })),
        ],
      },
    },
    volumeClaimTemplates: [
      {
        metadata: { name: "data" },
        spec: {
          accessModes: ["ReadWriteOnce"],
          resources: { requests: { storage: String(managed.storage ?? DEFAULT_STORAGE) } },
        },
      },
    ],
  };
  // Only the components that use the store reach it; etcd and NATS also admit the operator (it
  // publishes the Region's flags to its etcd and hears the pods' reports on its NATS).
  const from: unknown[] = STORE_CLIENTS[store].map((component) => regionPods(r, component));
  if (store === "etcd" || store === "nats") {
    from.push({ namespaceSelector: {}, podSelector: { matchLabels: { [LABEL.name]: OPERATOR_NAME } } });
  }
  // NATS also admits the world-event orchestrator (the chart's Deployment): it writes world events
  // to the Region's JetStream and reads its map servers' live reports (workloads/orchestrator).
  if (store === "nats") {
    from.push({ namespaceSelector: {}, podSelector: { matchLabels: { [LABEL.name]: ORCHESTRATOR_NAME } } });
  }
  return [
    child("v1", "Service", name, owner, labels, {
      spec: {
        clusterIP: "None",
        selector: sel,
        ports: [{ name: def.portName, port: def.port, targetPort: def.portName }],
      },
    }),
    child("apps/v1", "StatefulSet", name, owner, labels, { spec: sts }),
    child("networking.k8s.io/v1", "NetworkPolicy", name, owner, labels, {
      spec: {
        podSelector: { matchLabels: sel },
        policyTypes: ["Ingress"],
        ingress: [{ from, ports: [{ port: def.port, protocol: "TCP" }] }],
      },
    }),
  ];
}
