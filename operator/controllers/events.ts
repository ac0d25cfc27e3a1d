// Kubernetes Events for notable transitions (Stalled, Ready, drift repaired). Best effort:
// an Event that cannot be written is logged, never fails a reconcile.

import type { KubeClient } from "../../platform/kube/kube.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import type { Logger } from "../../platform/log.ts";

export const REPORTING_COMPONENT = "hybrid-operator";

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly log: Logger;
  private readonly instance: string;

  constructor(client: KubeClient, log: Logger, instance: string) {
    this.client = client;
    this.log = log;
    this.instance = instance;
  }

  async record(obj: KubeObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    const now = new Date().toISOString();
    const ns = obj.metadata.namespace ?? "default";
    try {
      await this.client.create({
        apiVersion: "v1",
        kind: "Event",
        metadata: {
          name: `${obj.metadata.name}.${Date.now().toString(16)}${Math.random().toString(16).slice(2, 6)}`,
          namespace: ns,
        },
        involvedObject: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace: ns,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
        type,
        reason,
        message: message.slice(0, 1024),
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
        source: { component: REPORTING_COMPONENT },
        reportingComponent: REPORTING_COMPONENT,
        reportingInstance: this.instance,
      });
    } catch (err) {
      this.log.warn("could not record event", { reason, err: String(err) });
    }
  }
}
