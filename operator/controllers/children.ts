// Applying rendered children with server-side apply, but only when the live object differs
// from the desired one: a converged operator sends no writes, even on resync.

import { objectKey } from "../../platform/kube/informer.ts";
import type { KubeClient } from "../../platform/kube/kube.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";

const quantity = /^([+-]?[0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$/;
const factor: Record<string, number> = {
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The apiserver canonicalises quantities ("0.5" → "500m"); compare their values. */
function sameQuantity(a: string, b: string): boolean {
  const ma = quantity.exec(a);
  const mb = quantity.exec(b);
  if (!ma || !mb) return false;
  const v = (m: RegExpExecArray) =>
    Number(m[1]) *
    (m[2] === undefined ? 1 : m[2].startsWith("e") ? 10 ** Number(m[2].slice(1)) : factor[m[2]]!);
  return Math.abs(v(ma) - v(mb)) <= 1e-9 * Math.max(1, Math.abs(v(ma)));
}

const isEmpty = (v: unknown): boolean =>
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === "object" && v !== null && Object.keys(v).length === 0);

/**
 * Whether every field of `desired` is present with the same value in `live`. Fields the
 * apiserver defaults (or other managers own) are extra in `live` and ignored, which is what
 * server-side apply would leave alone too.
 */
export function isSubset(desired: unknown, live: unknown): boolean {
  if (desired === live) return true;
  if (live === undefined || live === null) return desired === undefined || isEmpty(desired);
  if (typeof desired === "string" && typeof live === "string") return sameQuantity(desired, live);
  if (typeof desired === "number" && typeof live === "string") return sameQuantity(String(desired), live);
  if (typeof desired !== "object" || desired === null || typeof live !== "object") return false;
  if (Array.isArray(desired)) {
    if (!Array.isArray(live)) return false;
    if (desired.length === live.length) return desired.every((d, i) => isSubset(d, live[i]));
    return desired.length < live.length && desired.every((d) => live.some((l) => isSubset(d, l)));
  }
  if (Array.isArray(live)) return false;
  return Object.entries(desired).every(([k, v]) => isSubset(v, (live as Record<string, unknown>)[k]));
}

export type ChildOutcome = "unchanged" | "created" | "updated";

/** Reads the live child (normally from an informer cache). */
export type LiveLookup = (desired: KubeObject) => KubeObject | undefined;

function rvNewer(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return BigInt(a) > BigInt(b);
}

/**
 * Applies children that differ from their live state. It remembers what it applied last,
 * so a reconcile that runs before the informer caught up does not re-apply (and does not
 * mistake its own write for drift).
 */
export class ChildApplier {
  private readonly client: KubeClient;
  private readonly lastApplied = new Map<string, { rv: string; desired: string }>();

  constructor(client: KubeClient) {
    this.client = client;
  }

  private key(o: KubeObject): string {
    return `${o.apiVersion}/${o.kind}/${objectKey(o)}`;
  }

  /** An informer saw a child go away: forget it, so it is re-created. */
  forget(o: KubeObject): void {
    const k = this.key(o);
    const known = this.lastApplied.get(k);
    if (known && !rvNewer(known.rv, o.metadata.resourceVersion)) this.lastApplied.delete(k);
  }

  async apply(desired: KubeObject, lookup: LiveLookup): Promise<ChildOutcome> {
    const live = lookup(desired);
    if (live && isSubset(desired, live)) return "unchanged";
    const k = this.key(desired);
    const known = this.lastApplied.get(k);
    const json = JSON.stringify(desired);
    // The cache is behind our own last write of exactly this object.
    if (
      known &&
      known.desired === json &&
      (live === undefined || rvNewer(known.rv, live.metadata.resourceVersion))
    ) {
      return "unchanged";
    }
    const applied = await this.client.apply(desired);
    this.lastApplied.set(k, { rv: applied.metadata.resourceVersion ?? "", desired: json });
    return live ? "updated" : "created";
  }
}
