// The Region's generated Secrets (operator/render/secrets.ts plans them): created on the Region's
// first reconcile, kept as made, never regenerated while they exist, never logged. The operator
// may only get and create Secrets, by name (the chart's RBAC: no list, watch, update or delete),
// so it reads each by name and keeps what it read for a minute instead of watching them.

import { ApiError, type KubeClient, resources } from "../../platform/kube/kube.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { GENERATED_SECRET } from "../../platform/stores/generated.ts";
import type { Region } from "../api/index.ts";
import { generatedSecret, planRegionSecrets, type SecretPlan } from "../render/secrets.ts";
import type { StoreSecrets } from "../render/stores.ts";
import { caFromData, generateData } from "../secrets/generate.ts";
import type { KeyPair } from "../secrets/pki.ts";

/** How long a Secret read stays trusted: a deleted generated Secret is made anew within this. */
export const SECRET_RECHECK_MS = 60_000;

interface Known {
  data: Record<string, string>;
  at: number;
}

/** A generated Secret that exists but cannot be used as it is (the operator never changes one). */
export class UnusableSecretError extends Error {}

export const decodeSecret = (s: KubeObject): Record<string, string> =>
  Object.fromEntries(
    Object.entries((s as { data?: Record<string, string> }).data ?? {}).map(([k, v]) => [
      k,
      Buffer.from(v, "base64").toString("utf8"),
    ]),
  );

/** Reads Secrets by name, remembering each for SECRET_RECHECK_MS. */
export class SecretReader {
  private readonly client: KubeClient;
  private readonly known = new Map<string, Known>();
  private readonly now: () => number;

  constructor(client: KubeClient, now: () => number = Date.now) {
    this.client = client;
    this.now = now;
  }

  /** The Secret's decoded data, or undefined when it does not exist. */
  async get(namespace: string, name: string): Promise<Record<string, string> | undefined> {
    const k = `${namespace}/${name}`;
    const hit = this.known.get(k);
    if (hit && this.now() - hit.at < SECRET_RECHECK_MS) return hit.data;
    const s = await this.client.get(resources.secret, namespace, name);
    if (!s) {
      this.known.delete(k);
      return undefined;
    }
    const data = decodeSecret(s);
    this.known.set(k, { data, at: this.now() });
    return data;
  }

  /** Creates the Secret unless one of its name exists; returns the data that is there now. */
  async create(secret: KubeObject): Promise<{ data: Record<string, string>; created: boolean }> {
    const ns = secret.metadata.namespace!;
    try {
      const made = await this.client.create(secret);
      const data = decodeSecret(made);
      this.known.set(`${ns}/${secret.metadata.name}`, { data, at: this.now() });
      return { data, created: true };
    } catch (e) {
      // Another writer (or an earlier attempt whose answer was lost) made it first: keep theirs.
      if (!(e instanceof ApiError && e.status === 409)) throw e;
      this.known.delete(`${ns}/${secret.metadata.name}`);
      const data = await this.get(ns, secret.metadata.name);
      if (!data) throw e;
      return { data, created: false };
    }
  }

  /** Forgets what it read of a namespace's Secret (it was found wanting). */
  forget(namespace: string, name: string): void {
    this.known.delete(`${namespace}/${name}`);
  }
}

function requiredKeys(plan: SecretPlan): string[] {
  switch (plan.kind) {
    case "ca":
      return ["ca.crt", "ca.key"];
    case "cert":
      return ["tls.crt", "tls.key", "ca.crt"];
    case "passwords":
      return [...plan.random, ...Object.keys(plan.fixed)];
  }
}

export interface RegionSecrets {
  /** Every generated Secret's data, by name. */
  data: Map<string, Record<string, string>>;
  /** Names created by this call. */
  created: string[];
}

/**
 * Makes the Region's missing generated Secrets (the CA first: it signs the rest) and returns what
 * every one holds. A Secret that exists is kept as it is, whoever made it (a user may bring one
 * of these names); one that lacks a key it must have is an UnusableSecretError naming it.
 */
export async function ensureRegionSecrets(
  reader: SecretReader,
  region: Region & KubeObject,
): Promise<RegionSecrets> {
  const ns = region.metadata.namespace!;
  const out: RegionSecrets = { data: new Map(), created: [] };
  let ca: KeyPair | undefined;
  for (const plan of planRegionSecrets(region)) {
    let data = await reader.get(ns, plan.name);
    if (!data) {
      const made = await reader.create(generatedSecret(region, plan, await generateData(plan, ca)));
      data = made.data;
      if (made.created) out.created.push(plan.name);
    }
    const lacking = requiredKeys(plan).filter((k) => !data[k]);
    if (lacking.length > 0) {
      reader.forget(ns, plan.name);
      throw new UnusableSecretError(
        `Secret "${plan.name}" lacks ${lacking.join(", ")}; the operator never changes a Secret it finds: delete it to have it made anew`,
      );
    }
    if (plan.kind === "ca") ca = caFromData(data);
    out.data.set(plan.name, data);
  }
  return out;
}

/** What the managed stores' rendering needs from the generated Secrets. */
export function storeSecrets(region: Region, secrets: RegionSecrets): StoreSecrets {
  const nats = secrets.data.get(GENERATED_SECRET.credentials(region.metadata!.name!, "nats"));
  return nats ? { natsPasswords: nats } : {};
}

/** Creates the rendered configuration Secrets (the NATS configuration) that do not exist yet.
 * Their names carry a hash of their content, so a new content is a new Secret (create only:
 * the operator may not update Secrets) and the pod rolls to it; the old ones go with the Region. */
export async function createConfigSecrets(reader: SecretReader, secrets: KubeObject[]): Promise<string[]> {
  const created: string[] = [];
  for (const s of secrets) {
    if (await reader.get(s.metadata.namespace!, s.metadata.name)) continue;
    if ((await reader.create(s)).created) created.push(s.metadata.name);
  }
  return created;
}
