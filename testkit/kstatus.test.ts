import { describe, expect, it } from "vitest";
import { computeStatus, type KObject } from "./kstatus.ts";
import { STATUS_CASES } from "./status-fixtures.ts";

describe("kstatus reads the operator's statuses", () => {
  for (const c of STATUS_CASES) {
    it(`${c.name}: ${c.kstatus}`, () => {
      expect(computeStatus(c.obj).status).toBe(c.kstatus);
    });
  }

  it("says why an older generation is in progress, and that deletion is Terminating", () => {
    const stale = STATUS_CASES.find((c) => c.name === "Zone ready for an older generation")!;
    expect(computeStatus(stale.obj).message).toBe(
      "Zone generation is 4, but latest observed generation is 3",
    );
    const deleting = {
      ...stale.obj,
      metadata: { ...stale.obj.metadata, deletionTimestamp: "2026-11-23T12:00:00Z" },
    };
    expect(computeStatus(deleting).status).toBe("Terminating");
    expect(computeStatus(undefined).status).toBe("NotFound");
  });
});

describe("kstatus rules for the workloads the operator creates", () => {
  const deployment = (status: Record<string, unknown>, conditions: unknown[] = []): KObject => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { generation: 2 },
    spec: { replicas: 2 },
    status: { observedGeneration: 2, conditions, ...status },
  });
  const rolledOut = [
    { type: "Progressing", status: "True", reason: "NewReplicaSetAvailable" },
    { type: "Available", status: "True", reason: "MinimumReplicasAvailable" },
  ];

  it("a Deployment is Current once every replica is updated, available and ready", () => {
    const all = { replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 };
    expect(computeStatus(deployment(all, rolledOut)).status).toBe("Current");
    expect(computeStatus(deployment({ ...all, readyReplicas: 1 }, rolledOut))).toEqual({
      status: "InProgress",
      message: "Ready: 1/2",
    });
    expect(computeStatus(deployment({ ...all, replicas: 3 }, rolledOut)).message).toBe(
      "Pending termination: 1",
    );
    expect(computeStatus(deployment(all, [rolledOut[1]])).message).toBe("ReplicaSet not Available");
    const stuck = [{ type: "Progressing", status: "False", reason: "ProgressDeadlineExceeded" }];
    expect(computeStatus(deployment({ replicas: 2 }, stuck)).status).toBe("Failed");
    const { observedGeneration: _, ...unobserved } = deployment(all, rolledOut).status!;
    expect(computeStatus({ ...deployment(all), status: unobserved }).status).toBe("InProgress");
  });

  it("a StatefulSet is Current once every replica is ready on the update revision", () => {
    const sts = (status: Record<string, unknown>, spec: Record<string, unknown> = {}): KObject => ({
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { generation: 1 },
      spec: { replicas: 3, ...spec },
      status: { observedGeneration: 1, ...status },
    });
    const done = {
      replicas: 3,
      readyReplicas: 3,
      currentReplicas: 3,
      updatedReplicas: 3,
      currentRevision: "a",
      updateRevision: "a",
    };
    expect(computeStatus(sts(done)).status).toBe("Current");
    expect(computeStatus(sts({ ...done, readyReplicas: 2 })).message).toBe("Ready: 2/3");
    expect(computeStatus(sts({ ...done, updateRevision: "b" })).status).toBe("InProgress");
    expect(computeStatus(sts({ replicas: 1 }, { updateStrategy: { type: "OnDelete" } })).status).toBe(
      "Current",
    );
    const partitioned = { updateStrategy: { type: "RollingUpdate", rollingUpdate: { partition: 2 } } };
    expect(computeStatus(sts({ ...done, updatedReplicas: 1, updateRevision: "b" }, partitioned)).status).toBe(
      "Current",
    );
    expect(computeStatus(sts({ ...done, updatedReplicas: 0, updateRevision: "b" }, partitioned)).status).toBe(
      "InProgress",
    );
  });
});
