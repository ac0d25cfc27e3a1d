// The Secrets a Region needs generated: names, types, what each holds. Pure: the Region
// reconciler fills the plan with the PKI (operator/secrets/generate.ts), creates the missing
// Secrets once and never regenerates one that exists (controllers/secrets.ts).
//
//   <region>-ca                      Opaque             ca.crt, ca.key: the Region's CA
//   <region>-serving-tls             kubernetes.io/tls  tls.crt, tls.key, ca.crt: gateway, coordinator,
//                                                       login and char servers (unless spec.tls names one)
//   <region>-<store>-server-tls      kubernetes.io/tls  each managed store's serving certificate
//   <region>-etcd-<role>-tls         kubernetes.io/tls  etcd client certificates, CN = the etcd user:
//                                                       root, the operator, each component using etcd
//   <region>-etcd-credentials        Opaque             root-password (etcd wants one to enable auth)
//   <region>-nats-credentials        Opaque             a password per NATS user, keyed by role
//   <region>-postgres-credentials    Opaque             username, password (scram-sha-256)
//   <region>-dragonfly-credentials   Opaque             password

import type { KubeObject } from "../../platform/kube/meta.ts";
import { GENERATED_SECRET } from "../../platform/stores/generated.ts";
import { ETCD_ROOT_USER, etcdUserName, type StoreRole } from "../../platform/stores/roles.ts";
import type { Region } from "../api/index.ts";
import { child, type Owner, standardLabels } from "./common.ts";
import {
  COMPONENTS,
  ETCD_OPERATOR_ROLE,
  ETCD_ROOT_ROLE,
  GENERATED_LABEL,
  LABEL,
  POSTGRES_USER,
  STORE_CLIENTS,
  STORE_NAMES,
  type StoreName,
} from "./constants.ts";
import { isExternal, natsRoles, storeServiceName, storeSpec } from "./stores.ts";

export type CertUsage = "server" | "client" | "server+client";

export type SecretPlan =
  | { kind: "ca"; name: string; commonName: string }
  | {
      kind: "cert";
      name: string;
      commonName: string;
      usage: CertUsage;
      /** DNS names and IP addresses. */
      hosts: string[];
    }
  | {
      kind: "passwords";
      name: string;
      /** Keys that get a random password each. */
      random: string[];
      /** Keys with a fixed value (a user name). */
      fixed: Record<string, string>;
    };

/** The etcd client-certificate roles of a managed etcd and the user (CN) of each. */
export function etcdClientRoles(region: string): Array<{ role: string; user: string }> {
  return [
    { role: ETCD_ROOT_ROLE, user: ETCD_ROOT_USER },
    { role: ETCD_OPERATOR_ROLE, user: etcdUserName("operator") },
    ...STORE_CLIENTS.etcd.map((c) => ({ role: c, user: etcdUserName(c as StoreRole, region) })),
  ];
}

/** The names a Service answers to inside the cluster (both cluster-domain spellings). */
export function serviceHosts(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
  ];
}
// Port-forwards and development clients reach the Services on the loopback address.
const LOOPBACK = ["localhost", "127.0.0.1"];

export const servingTlsEnabled = (region: Region): boolean => region.spec.tls?.mode !== "Disabled";

/** The serving Secret the client-facing components mount: the Region's own, or the generated one. */
export function servingSecretName(region: Region): string {
  return region.spec.tls?.secretName ?? GENERATED_SECRET.serving(region.metadata!.name!);
}

export function managedStores(region: Region): StoreName[] {
  return STORE_NAMES.filter((s) => !isExternal(storeSpec(region, s)));
}

/** Every Secret the operator must generate for the Region, the CA first (it signs the rest). */
export function planRegionSecrets(region: Region): SecretPlan[] {
  const r = region.metadata!.name!;
  const ns = region.metadata!.namespace!;
  const stores = managedStores(region);
  const serving = servingTlsEnabled(region) && region.spec.tls?.secretName === undefined;
  if (!serving && stores.length === 0) return [];
  const plans: SecretPlan[] = [{ kind: "ca", name: GENERATED_SECRET.ca(r), commonName: `${r}.${ns} CA` }];
  if (serving) {
    plans.push({
      kind: "cert",
      name: GENERATED_SECRET.serving(r),
      commonName: `${r}-gateway`,
      usage: "server",
      hosts: [...COMPONENTS.flatMap((c) => serviceHosts(`${r}-${c.component}`, ns)), ...LOOPBACK],
    });
  }
  for (const store of stores) {
    const svc = storeServiceName(r, store);
    plans.push({
      kind: "cert",
      name: GENERATED_SECRET.storeServer(r, store),
      commonName: svc,
      // etcd dials itself (its gRPC gateway) with its own certificate: it is a client too.
      usage: store === "etcd" ? "server+client" : "server",
      hosts: [...serviceHosts(svc, ns), `*.${svc}.${ns}.svc`, ...LOOPBACK],
    });
    switch (store) {
      case "etcd":
        for (const { role, user } of etcdClientRoles(r))
          plans.push({
            kind: "cert",
            name: GENERATED_SECRET.etcdClient(r, role),
            commonName: user,
            usage: "client",
            hosts: [],
          });
        plans.push({
          kind: "passwords",
          name: GENERATED_SECRET.credentials(r, store),
          random: ["root-password"],
          fixed: {},
        });
        break;
      case "nats":
        plans.push({
          kind: "passwords",
          name: GENERATED_SECRET.credentials(r, store),
          random: natsRoles(),
          fixed: {},
        });
        break;
      case "postgres":
        plans.push({
          kind: "passwords",
          name: GENERATED_SECRET.credentials(r, store),
          random: ["password"],
          fixed: { username: POSTGRES_USER },
        });
        break;
      case "dragonfly":
        plans.push({
          kind: "passwords",
          name: GENERATED_SECRET.credentials(r, store),
          random: ["password"],
          fixed: {},
        });
        break;
    }
  }
  return plans;
}

/** The Secret object of a plan with its contents (`data` plain text; encoded here). */
export function generatedSecret(region: Region, plan: SecretPlan, data: Record<string, string>): KubeObject {
  const r = region.metadata!.name!;
  const owner: Owner = { apiVersion: region.apiVersion!, kind: region.kind!, metadata: region.metadata! };
  const labels = {
    ...standardLabels({ [LABEL.name]: "hybrid-p2p-secret", [LABEL.instance]: r }, { region: r }),
    [GENERATED_LABEL]: plan.kind,
  };
  const secret = child("v1", "Secret", plan.name, owner, labels, {
    type: plan.kind === "cert" ? "kubernetes.io/tls" : "Opaque",
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")])),
  });
  return secret;
}
