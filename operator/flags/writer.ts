// The status writer: merge-patches the flag plane's fields into Zone and P2PPolicy status
// (status subresource) and records the fallback Events, through @kubernetes/client-node.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { GROUP, P2P_POLICY, VERSION, ZONE } from "../api/constants.ts";
import type { FlagEvent, PolicyCondition, PolicyFlagStatus, ZoneFlagStatus } from "./status.ts";

export const FLAG_PLANE_COMPONENT = "hybrid-operator/flags";

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

/** metav1.Time has second precision. */
export function nowSeconds(d = new Date()): string {
  return d.toISOString().replace(/\.\d+Z$/, "Z");
}

/** Desired conditions with transition times kept where the status did not change. */
export function withTransitions(
  previous: readonly Condition[] | undefined,
  desired: readonly PolicyCondition[],
  generation: number,
  now: string,
): Condition[] {
  const old = new Map((previous ?? []).map((c) => [c.type, c]));
  return desired.map((d) => {
    const o = old.get(d.type);
    return {
      ...d,
      observedGeneration: generation,
      lastTransitionTime: o !== undefined && o.status === d.status ? o.lastTransitionTime : now,
    };
  });
}

export class FlagStatusWriter {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly instance: string;

  constructor(kc: KubeConfig, instance: string) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.instance = instance;
  }

  async patchZone(namespace: string, name: string, status: ZoneFlagStatus): Promise<void> {
    await this.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: ZONE.plural, namespace, name, body: { status } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  async patchPolicy(
    namespace: string,
    name: string,
    status: Omit<PolicyFlagStatus, "conditions"> & { conditions: Condition[] },
  ): Promise<void> {
    await this.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: P2P_POLICY.plural, namespace, name, body: { status } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  async event(e: FlagEvent, uid?: string): Promise<void> {
    const now = new Date();
    await this.core.createNamespacedEvent({
      namespace: e.namespace,
      body: {
        metadata: { generateName: `${e.name}.`, namespace: e.namespace },
        involvedObject: {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: e.kind,
          name: e.name,
          namespace: e.namespace,
          uid,
        },
        type: e.type,
        reason: e.reason,
        message: e.message.slice(0, 1024),
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
        source: { component: FLAG_PLANE_COMPONENT },
        reportingComponent: FLAG_PLANE_COMPONENT,
        reportingInstance: this.instance,
      },
    });
  }
}
