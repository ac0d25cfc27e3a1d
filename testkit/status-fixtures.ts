// Statuses of Regions, Zones and P2PPolicies as the operator writes them (its own condition
// functions), with what kstatus and the Argo CD health check must read from each. Shared by
// hack/kstatus.test.ts and hack/chart.int.test.ts (which runs the Argo CD Lua script).
import { mergeConditions, type Phase, phaseConditions } from "../operator/controllers/conditions.ts";
import type { KObject, KStatus } from "./kstatus.ts";

export type ArgoHealth = "Healthy" | "Progressing" | "Degraded" | "Suspended" | "Missing" | "Unknown";

export interface StatusCase {
  name: string;
  obj: KObject;
  kstatus: KStatus;
  argo: ArgoHealth;
}

const NOW = new Date("2026-11-23T12:00:00Z");

function object(
  kind: string,
  generation: number,
  status?: { observedGeneration: number; phase: Phase; degraded?: boolean },
): KObject {
  const obj: KObject = { apiVersion: "hybridp2p.io/v1alpha1", kind, metadata: { name: "x", generation } };
  if (status) {
    const desired = phaseConditions(status.phase);
    if (status.degraded !== undefined) {
      desired.push({
        type: "Degraded",
        status: status.degraded ? "True" : "False",
        reason: status.degraded ? "Fallback" : "AsExpected",
        message: status.degraded ? "coordinator unreachable" : "",
      });
    }
    obj.status = {
      observedGeneration: status.observedGeneration,
      conditions: mergeConditions(undefined, desired, status.observedGeneration, NOW),
    };
  }
  return obj;
}

const ready: Phase = { phase: "Ready", reason: "Reconciled", message: "all replicas ready" };
const reconciling: Phase = { phase: "Reconciling", reason: "Progressing", message: "1 of 2 replicas ready" };
const stalled: Phase = { phase: "Stalled", reason: "SecretNotFound", message: 'Secret "pg" (postgres)' };

export const STATUS_CASES: StatusCase[] = [
  ...["Region", "Zone", "P2PPolicy"].flatMap((kind): StatusCase[] => [
    {
      name: `${kind} ready`,
      obj: object(kind, 3, { observedGeneration: 3, phase: ready }),
      kstatus: "Current",
      argo: "Healthy",
    },
    {
      name: `${kind} reconciling`,
      obj: object(kind, 3, { observedGeneration: 3, phase: reconciling }),
      kstatus: "InProgress",
      argo: "Progressing",
    },
    {
      name: `${kind} stalled`,
      obj: object(kind, 3, { observedGeneration: 3, phase: stalled }),
      kstatus: "Failed",
      argo: "Degraded",
    },
    {
      name: `${kind} ready for an older generation`,
      obj: object(kind, 4, { observedGeneration: 3, phase: ready }),
      kstatus: "InProgress",
      argo: "Progressing",
    },
  ]),
  // kstatus takes an object without any status as current (it cannot tell); Argo CD waits.
  { name: "Zone without status", obj: object("Zone", 1), kstatus: "Current", argo: "Progressing" },
  {
    name: "Zone in fallback",
    obj: object("Zone", 2, { observedGeneration: 2, phase: ready, degraded: true }),
    kstatus: "Current",
    argo: "Degraded",
  },
  {
    name: "Zone out of fallback",
    obj: object("Zone", 2, { observedGeneration: 2, phase: ready, degraded: false }),
    kstatus: "Current",
    argo: "Healthy",
  },
];
