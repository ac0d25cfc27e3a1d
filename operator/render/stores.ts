// Data stores, each managed (a single-instance StatefulSet + Service, for development and
// small installs) or external (endpoints plus Secret references, for production). Either
// way the workloads see the same environment variables.

import type { V1EnvVar, V1StatefulSetSpec, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { GENERATED_SECRET } from "../../platform/stores/generated.ts";
import {
  natsPermissions,
  natsUserName,
  renderNatsConfig,
  type StoreRole,
} from "../../platform/stores/roles.ts";
import type { DataStore, Region } from "../api/index.ts";
import {
  child,
  containerSecurityContext,
  hashOf,
  ingressPolicy,
  podSecurityContext,
  regionPods,
  resources,
  selectorLabels,
  standardLabels,
  tcpProbes,
} from "./common.ts";
import {
  CONFIG_HASH_ANNOTATION,
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

// External endpoints without a scheme get these; managed stores always serve TLS (etcd's and
// Redis' clients pick TLS from the scheme; NATS and pg from the TLS material).
const scheme: Record<StoreName, string> = {
  etcd: "http",
  nats: "nats",
  postgres: "postgres",
  dragonfly: "redis",
};
const managedScheme: Record<StoreName, string> = {
  etcd: "https",
  nats: "nats",
  postgres: "postgres",
  dragonfly: "rediss",
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
    : `${managedScheme[store]}://${host}:${port}`;
}

/** Secrets the Region names (its external stores', its serving certificate): the Region is
 * Stalled until they exist. */
export function referencedSecrets(region: Region): Array<{ store: StoreName | "tls"; name: string }> {
  const out: Array<{ store: StoreName | "tls"; name: string }> = [];
  const serving = region.spec.tls;
  if (serving?.mode !== "Disabled" && serving?.secretName)
    out.push({ store: "tls", name: serving.secretName });
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

/** The NATS users of a Region's managed NATS, by role: the operator (it hears the reports), the
 * chart's orchestrator (world events) and every component that uses NATS. */
export function natsRoles(): StoreRole[] {
  return ["operator", "orchestrator", ...(STORE_CLIENTS.nats as StoreRole[])];
}

const tlsDir = (store: StoreName) => `/etc/hybridp2p/tls/${store}`;

/** How one component's pods reach every store: addresses, credentials
 * (HYBRIDP2P_<STORE>_USERNAME/_PASSWORD) and TLS material mounted at /etc/hybridp2p/tls/<store>
 * (HYBRIDP2P_<STORE>_TLS_DIR). Credentials only for the stores the component uses (STORE_CLIENTS).
 * External: the Secrets the Region names (username and password keys, or _PASSWORD from one key).
 * Managed: the generated Secrets (render/secrets.ts): the component's own etcd client
 * certificate, its own NATS user, the PostgreSQL and Dragonfly passwords, the Region's CA. */
export function storeWiring(region: Region, component: string): StoreWiring {
  let perRegion = wirings.get(region);
  if (!perRegion) {
    perRegion = new Map();
    wirings.set(region, perRegion);
  }
  const known = perRegion.get(component);
  if (known) return known;
  const r = region.metadata!.name!;
  const w: StoreWiring = { config: {}, secretEnv: [], volumes: [], volumeMounts: [] };
  const mount = (store: StoreName, secret: V1Volume["secret"]) => {
    w.volumes.push({ name: `tls-${store}`, secret });
    w.volumeMounts.push({ name: `tls-${store}`, mountPath: tlsDir(store), readOnly: true });
    w.config[`HYBRIDP2P_${store.toUpperCase()}_TLS_DIR`] = tlsDir(store);
  };
  const secretEnv = (name: string, secret: string, key: string, optional = false) =>
    w.secretEnv.push({
      name,
      valueFrom: { secretKeyRef: { name: secret, key, ...(optional ? { optional } : {}) } },
    });
  for (const store of STORE_NAMES) {
    w.config[urlEnv[store]] = storeAddress(region, store);
    if (!STORE_CLIENTS[store].includes(component)) continue;
    const spec = storeSpec(region, store);
    const prefix = `HYBRIDP2P_${store.toUpperCase()}`;
    if (isExternal(spec)) {
      const ref = spec.external?.secretRef;
      if (ref?.key) secretEnv(`${prefix}_PASSWORD`, ref.name, ref.key);
      else if (ref) {
        secretEnv(`${prefix}_USERNAME`, ref.name, "username", true);
        secretEnv(`${prefix}_PASSWORD`, ref.name, "password");
      }
      const tls = spec.external?.tlsSecretRef;
      if (tls) mount(store, { secretName: tls.name });
      continue;
    }
    // Clients that log in by password need only the CA: mount ca.crt alone, never the CA's key.
    const caOnly = { secretName: GENERATED_SECRET.ca(r), items: [{ key: "ca.crt", path: "ca.crt" }] };
    const creds = GENERATED_SECRET.credentials(r, store);
    switch (store) {
      case "etcd":
        // etcd takes the user from the client certificate's CN.
        mount(store, { secretName: GENERATED_SECRET.etcdClient(r, component) });
        break;
      case "nats":
        w.config[`${prefix}_USERNAME`] = natsUserName(component as StoreRole, r);
        secretEnv(`${prefix}_PASSWORD`, creds, component);
        mount(store, caOnly);
        break;
      case "postgres":
        secretEnv(`${prefix}_USERNAME`, creds, "username");
        secretEnv(`${prefix}_PASSWORD`, creds, "password");
        mount(store, caOnly);
        break;
      case "dragonfly":
        secretEnv(`${prefix}_PASSWORD`, creds, "password");
        mount(store, caOnly);
        break;
    }
  }
  perRegion.set(component, w);
  return w;
}
// Remembered per Region object, like withRegionDefaults (callers must not mutate the result).
const wirings = new WeakMap<Region, Map<string, StoreWiring>>();

/** What the managed stores' configuration needs from the generated Secrets: the NATS users'
 * passwords by role (nats-server's configuration lists them). */
export interface StoreSecrets {
  natsPasswords?: Record<string, string>;
}

interface StoreContainer {
  command?: string[];
  args?: string[];
  env?: V1EnvVar[];
  dataDir: string;
  /** Writable scratch directories besides /tmp (the root filesystem is read-only). */
  extraMounts: V1VolumeMount[];
  /** Secrets and ConfigMaps mounted read-only. */
  configMounts: Array<{ volume: V1Volume; mountPath: string }>;
  /** Rendered configuration children (and the hash that rolls the pod when they change). */
  children: Array<{ kind: "Secret" | "ConfigMap"; name: string; data: Record<string, string> }>;
}

const STORE_TLS_DIR = "/etc/hybridp2p/tls/server";

/** The NATS configuration: a user per role with its subject permissions, TLS, JetStream. */
export function natsConfig(region: Region, passwords: Record<string, string>): string {
  const r = region.metadata!.name!;
  const users = natsRoles().map((role) => {
    const password = passwords[role];
    if (!password)
      throw new Error(
        `the NATS password of ${role} is missing from ${GENERATED_SECRET.credentials(r, "nats")}`,
      );
    return { user: natsUserName(role, r), password, permissions: natsPermissions(role, r) };
  });
  return renderNatsConfig({
    users,
    port: STORES.nats.port,
    httpPort: 8222,
    jetstreamDir: "/data",
    tls: {
      certFile: `${STORE_TLS_DIR}/tls.crt`,
      keyFile: `${STORE_TLS_DIR}/tls.key`,
      caFile: `${STORE_TLS_DIR}/ca.crt`,
    },
  });
}

/** Client authentication on every managed store, and TLS on every one: plaintext is refused. */
function storeContainer(
  region: Region,
  store: StoreName,
  host: string,
  secrets: StoreSecrets,
): StoreContainer {
  const r = region.metadata!.name!;
  const serverTls = (mode?: number) => ({
    volume: {
      name: "server-tls",
      secret: { secretName: GENERATED_SECRET.storeServer(r, store), ...(mode ? { defaultMode: mode } : {}) },
    },
    mountPath: STORE_TLS_DIR,
  });
  const creds = GENERATED_SECRET.credentials(r, store);
  switch (store) {
    case "etcd":
      return {
        command: ["etcd"],
        args: [
          "--name=etcd-0",
          "--data-dir=/var/lib/etcd/data",
          "--listen-client-urls=https://0.0.0.0:2379",
          `--advertise-client-urls=https://${host}:2379`,
          "--listen-peer-urls=http://127.0.0.1:2380",
          "--initial-advertise-peer-urls=http://127.0.0.1:2380",
          "--initial-cluster=etcd-0=http://127.0.0.1:2380",
          // Only clients with a certificate of the Region's CA; its CN is the etcd user, whose
          // roles (by key prefix) the operator applies once etcd answers (controllers/etcdauth.ts).
          "--client-cert-auth",
          `--trusted-ca-file=${STORE_TLS_DIR}/ca.crt`,
          `--cert-file=${STORE_TLS_DIR}/tls.crt`,
          `--key-file=${STORE_TLS_DIR}/tls.key`,
        ],
        dataDir: "/var/lib/etcd",
        extraMounts: [],
        configMounts: [serverTls()],
        children: [],
      };
    case "nats": {
      // Its configuration lists the users' passwords, so it is a Secret, rendered only with them
      // (the reconciler always has them; a render without them leaves it out rather than invent
      // any). Named by its content: the operator only creates Secrets, never updates one, so a
      // new configuration is a new Secret and the pod rolls to it.
      const config = secrets.natsPasswords ? natsConfig(region, secrets.natsPasswords) : undefined;
      const name = `${r}-nats-config-${config ? hashOf(config).slice(0, 10) : "pending"}`;
      return {
        args: ["-c", "/etc/nats/nats.conf"],
        dataDir: "/data",
        extraMounts: [],
        configMounts: [
          serverTls(),
          { volume: { name: "config", secret: { secretName: name } }, mountPath: "/etc/nats" },
        ],
        children: config ? [{ kind: "Secret", name, data: { "nats.conf": config } }] : [],
      };
    }
    case "postgres":
      // The official image's contract: POSTGRES_PASSWORD initialises the superuser (scram-sha-256);
      // pg_hba admits TCP only over TLS (hostssl). The key is group-readable only by the
      // postgres group (fsGroup), which PostgreSQL accepts for a root-owned key file.
      return {
        args: [
          "postgres",
          "-c",
          "ssl=on",
          "-c",
          `ssl_cert_file=${STORE_TLS_DIR}/tls.crt`,
          "-c",
          `ssl_key_file=${STORE_TLS_DIR}/tls.key`,
          "-c",
          "password_encryption=scram-sha-256",
          "-c",
          "hba_file=/etc/postgresql/hba/pg_hba.conf",
        ],
        env: [
          { name: "POSTGRES_DB", value: POSTGRES_DB },
          { name: "POSTGRES_USER", value: POSTGRES_USER },
          { name: "POSTGRES_PASSWORD", valueFrom: { secretKeyRef: { name: creds, key: "password" } } },
          { name: "PGDATA", value: "/var/lib/postgresql/data/pgdata" },
        ],
        dataDir: "/var/lib/postgresql/data",
        extraMounts: [{ name: "run", mountPath: "/var/run/postgresql" }],
        configMounts: [
          serverTls(0o640),
          {
            volume: { name: "hba", configMap: { name: `${r}-postgres-hba` } },
            mountPath: "/etc/postgresql/hba",
          },
        ],
        children: [
          {
            kind: "ConfigMap",
            name: `${r}-postgres-hba`,
            data: {
              "pg_hba.conf":
                "# Sockets inside the pod (the image's init) and TCP over TLS only, each with a scram password.\n" +
                "local all all scram-sha-256\nhostssl all all all scram-sha-256\n",
            },
          },
        ],
      };
    case "dragonfly":
      // DFLY_requirepass: Dragonfly reads flags from DFLY_<flag>, so the password stays out of the
      // command line. TLS on the client port (the local stand-in, redis-server, does the same).
      return {
        args: [
          "--port=6379",
          "--dir=/data",
          "--tls",
          `--tls_cert_file=${STORE_TLS_DIR}/tls.crt`,
          `--tls_key_file=${STORE_TLS_DIR}/tls.key`,
        ],
        env: [{ name: "DFLY_requirepass", valueFrom: { secretKeyRef: { name: creds, key: "password" } } }],
        dataDir: "/data",
        extraMounts: [],
        configMounts: [serverTls()],
        children: [],
      };
  }
}

/** A managed store: headless Service + single-instance StatefulSet + NetworkPolicy, plus its
 * configuration (NATS: a Secret, it lists passwords; PostgreSQL: its pg_hba ConfigMap). */
export function renderManagedStore(
  region: Region,
  store: StoreName,
  secrets: StoreSecrets = {},
): KubeObject[] {
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
  const c = storeContainer(region, store, `${name}.${ns}.svc`, secrets);
  const sts: V1StatefulSetSpec = {
    replicas: 1,
    serviceName: name,
    selector: { matchLabels: sel },
    template: {
      metadata: {
        labels,
        ...(c.children.length > 0 ? { annotations: { [CONFIG_HASH_ANNOTATION]: hashOf(c.children) } } : {}),
      },
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
              ...c.configMounts.map((m) => ({ name: m.volume.name, mountPath: m.mountPath, readOnly: true })),
            ],
          },
        ],
        volumes: [
          { name: "tmp", emptyDir: {} },
          ...c.extraMounts.map((m) => ({ name: m.name, emptyDir: {} })),
          ...c.configMounts.map((m) => m.volume),
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
    ...c.children.map((cfg) =>
      cfg.kind === "Secret"
        ? child("v1", "Secret", cfg.name, owner, labels, {
            type: "Opaque",
            immutable: true,
            data: Object.fromEntries(
              Object.entries(cfg.data).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
            ),
          })
        : child("v1", "ConfigMap", cfg.name, owner, labels, { data: cfg.data }),
    ),
    child("v1", "Service", name, owner, labels, {
      spec: {
        clusterIP: "None",
        selector: sel,
        ports: [{ name: def.portName, port: def.port, targetPort: def.portName }],
      },
    }),
    child("apps/v1", "StatefulSet", name, owner, labels, { spec: sts }),
    ingressPolicy(name, owner, labels, sel, [{ from, ports: [{ port: def.port, protocol: "TCP" }] }]),
  ];
}
