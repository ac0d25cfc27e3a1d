// A pod's volumes as the files the node agent writes and mounts: ConfigMaps, Secrets, the
// downward API and projected service-account tokens (what in-cluster clients read), emptyDirs
// and host paths. Pure: the agent fetches the data and writes the files.
import type { V1KeyToPath, V1Volume } from "@kubernetes/client-node";

export interface VolumeFile {
  path: string;
  content: string;
  mode: number;
}

export type Materialized =
  | { kind: "files"; files: VolumeFile[] }
  | { kind: "emptyDir" }
  | { kind: "hostPath"; path: string }
  | { kind: "claim"; claimName: string }
  | { kind: "unsupported"; reason: string };

export interface VolumeData {
  configMap(name: string): Record<string, string> | undefined;
  secret(name: string): Record<string, string> | undefined;
  /** A bound token of the pod's ServiceAccount (TokenRequest). */
  token(source: { audience?: string; expirationSeconds?: number }): string;
  fieldRef(path: string): string;
}

/** Names of the ConfigMaps and Secrets the volumes read, and whether any wants a token. */
export function volumeRefs(volumes: V1Volume[]): { configMaps: string[]; secrets: string[]; token: boolean } {
  const configMaps: string[] = [];
  const secrets: string[] = [];
  let token = false;
  for (const v of volumes) {
    if (v.configMap?.name) configMaps.push(v.configMap.name);
    if (v.secret?.secretName) secrets.push(v.secret.secretName);
    for (const s of v.projected?.sources ?? []) {
      if (s.configMap?.name) configMaps.push(s.configMap.name);
      if (s.secret?.name) secrets.push(s.secret.name);
      if (s.serviceAccountToken) token = true;
    }
  }
  return { configMaps, secrets, token };
}

function keyed(
  what: string,
  data: Record<string, string> | undefined,
  items: V1KeyToPath[] | undefined,
  optional: boolean | undefined,
  mode: number,
): VolumeFile[] {
  if (data === undefined) {
    if (optional) return [];
    throw new Error(`${what} not found`);
  }
  if (!items) return Object.entries(data).map(([k, v]) => ({ path: k, content: v, mode }));
  return items.map((i) => {
    const v = data[i.key];
    if (v === undefined) throw new Error(`${what}: no key ${i.key}`);
    return { path: i.path, content: v, mode: i.mode ?? mode };
  });
}

export function materialize(v: V1Volume, data: VolumeData): Materialized {
  if (v.emptyDir) return { kind: "emptyDir" };
  if (v.hostPath) return { kind: "hostPath", path: v.hostPath.path };
  if (v.persistentVolumeClaim) return { kind: "claim", claimName: v.persistentVolumeClaim.claimName };
  if (v.configMap) {
    const c = v.configMap;
    const files = keyed(
      `ConfigMap ${c.name}`,
      data.configMap(c.name!),
      c.items,
      c.optional,
      c.defaultMode ?? 0o644,
    );
    return { kind: "files", files };
  }
  if (v.secret) {
    const s = v.secret;
    const files = keyed(
      `Secret ${s.secretName}`,
      data.secret(s.secretName!),
      s.items,
      s.optional,
      s.defaultMode ?? 0o644,
    );
    return { kind: "files", files };
  }
  if (v.downwardAPI) {
    const mode = v.downwardAPI.defaultMode ?? 0o644;
    const files = (v.downwardAPI.items ?? []).map((i) => ({
      path: i.path,
      content: i.fieldRef ? data.fieldRef(i.fieldRef.fieldPath) : "",
      mode: i.mode ?? mode,
    }));
    return { kind: "files", files };
  }
  if (v.projected) {
    const mode = v.projected.defaultMode ?? 0o644;
    const files: VolumeFile[] = [];
    for (const s of v.projected.sources ?? []) {
      if (s.serviceAccountToken) {
        files.push({ path: s.serviceAccountToken.path, content: data.token(s.serviceAccountToken), mode });
      } else if (s.configMap) {
        files.push(
          ...keyed(
            `ConfigMap ${s.configMap.name}`,
            data.configMap(s.configMap.name!),
            s.configMap.items,
            s.configMap.optional,
            mode,
          ),
        );
      } else if (s.secret) {
        files.push(
          ...keyed(
            `Secret ${s.secret.name}`,
            data.secret(s.secret.name!),
            s.secret.items,
            s.secret.optional,
            mode,
          ),
        );
      } else if (s.downwardAPI) {
        for (const i of s.downwardAPI.items ?? []) {
          files.push({
            path: i.path,
            content: i.fieldRef ? data.fieldRef(i.fieldRef.fieldPath) : "",
            mode: i.mode ?? mode,
          });
        }
      }
    }
    return { kind: "files", files };
  }
  return { kind: "unsupported", reason: `volume ${v.name}: type not supported by the local node agent` };
}

/** A kubeconfig for a pod run as a local process, where the in-cluster paths cannot be mounted:
 * the API server on loopback, the pod's own token file (re-read as it rotates). */
export function processKubeconfig(
  server: string,
  caFile: string,
  tokenFile: string,
  namespace: string,
): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "local", cluster: { server, "certificate-authority": caFile } }],
    users: [{ name: "pod", user: { "auth-provider": { name: "tokenFile", config: { tokenFile } } } }],
    contexts: [{ name: "pod", context: { cluster: "local", user: "pod", namespace } }],
    "current-context": "pod",
  });
}

/** A PersistentVolume for a pending claim: a directory on this node, bound to the claim up
 * front (the controller manager completes the binding) and pinned to the node. */
export function localVolume(
  claim: { metadata: { name: string; namespace: string; uid: string }; spec: PvcSpec },
  node: string,
  path: string,
): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "PersistentVolume",
    metadata: { name: `pvc-${claim.metadata.uid}`, labels: { "node.hybridp2p.io/provisioned-by": node } },
    spec: {
      capacity: { storage: claim.spec.resources?.requests?.storage ?? "1Gi" },
      accessModes: claim.spec.accessModes ?? ["ReadWriteOnce"],
      volumeMode: claim.spec.volumeMode ?? "Filesystem",
      storageClassName: claim.spec.storageClassName ?? "",
      persistentVolumeReclaimPolicy: "Retain",
      hostPath: { path, type: "DirectoryOrCreate" },
      claimRef: {
        apiVersion: "v1",
        kind: "PersistentVolumeClaim",
        name: claim.metadata.name,
        namespace: claim.metadata.namespace,
        uid: claim.metadata.uid,
      },
      nodeAffinity: {
        required: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [node] }] },
          ],
        },
      },
    },
  };
}

interface PvcSpec {
  accessModes?: string[];
  volumeMode?: string;
  storageClassName?: string;
  volumeName?: string;
  resources?: { requests?: Record<string, string> };
}
