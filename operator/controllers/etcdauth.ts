// Roles on a Region's managed etcd: the operator applies them (platform/stores/roles.ts,
// applyEtcdAuth) as etcd's root user once etcd answers, rather than an init step in the etcd pod:
// - the operator already holds the root certificate and reaches every Region's etcd (it
//   publishes the flags there), so no bootstrap credentials travel into the pod;
// - the pinned etcd image and the local stand-in carry etcd alone (no etcdctl, no shell);
// - it is idempotent, so the roles of a newer operator reach existing stores on its first pass,
//   where an init step would only run at the next pod restart.
// Before that first pass etcd's auth is off, but only clients holding a certificate of the
// Region's CA connect at all (--client-cert-auth): the operator's and the Region's own pods.

import { Etcd3 } from "etcd3";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { GENERATED_SECRET } from "../../platform/stores/generated.ts";
import { applyEtcdAuth, etcdRoles } from "../../platform/stores/roles.ts";
import type { Region } from "../api/index.ts";
import { ETCD_ROOT_ROLE } from "../render/constants.ts";
import type { RegionSecrets } from "./secrets.ts";

/** Deadline of each call while applying roles: a store that does not answer is tried again later. */
const CALL_TIMEOUT_MS = 5_000;

/** Remembers which etcd (by its StatefulSet's uid) has this Region's roles, per operator process. */
export class EtcdAuth {
  private readonly applied = new Map<string, string>();

  /** Whether the roles are in place; applies them when the store is ready and they may not be.
   * Throws (with etcd's error) when etcd refuses or does not answer. */
  async ensure(
    region: Region & KubeObject,
    etcd: KubeObject | undefined,
    secrets: RegionSecrets,
    url: string,
  ): Promise<boolean> {
    const key = region.metadata.uid ?? `${region.metadata.namespace}/${region.metadata.name}`;
    const ready = ((etcd?.status as { readyReplicas?: number } | undefined)?.readyReplicas ?? 0) > 0;
    if (!etcd || !ready) return false;
    const store = etcd.metadata.uid ?? "";
    if (this.applied.get(key) === store) return true;
    const r = region.metadata.name;
    const root = secrets.data.get(GENERATED_SECRET.etcdClient(r, ETCD_ROOT_ROLE));
    const creds = secrets.data.get(GENERATED_SECRET.credentials(r, "etcd"));
    if (!root || !creds) throw new Error("the etcd root credentials are missing");
    const client = new Etcd3({
      hosts: url.split(","),
      credentials: {
        rootCertificate: Buffer.from(root["ca.crt"]!),
        certChain: Buffer.from(root["tls.crt"]!),
        privateKey: Buffer.from(root["tls.key"]!),
      },
      dialTimeout: CALL_TIMEOUT_MS,
      defaultCallOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }),
    });
    try {
      await applyEtcdAuth(client, { roles: etcdRoles([r]), rootPassword: creds["root-password"]! });
    } finally {
      client.close();
    }
    this.applied.set(key, store);
    return true;
  }
}
