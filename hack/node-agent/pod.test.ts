import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import {
  containerArgv,
  containerEnv,
  type DataLookup,
  expand,
  type ObservedContainer,
  podPhase,
  podStatus,
  probePort,
  resourceRef,
  restartBackoffMs,
  shouldRestart,
} from "./pod.ts";
import { localImage } from "./runtime.ts";
import { materialize, type VolumeData, volumeRefs } from "./volumes.ts";

const pod = {
  metadata: { name: "map-0", namespace: "demo", uid: "u1", labels: { zone: "prt" }, annotations: { a: "b" } },
  spec: { nodeName: "n1", serviceAccountName: "map", containers: [] },
} as unknown as V1Pod;

const lookup: DataLookup = {
  configMap: (_ns, name) => (name === "cfg" ? { tick: "20", maps: "prontera" } : undefined),
  secret: (_ns, name) => (name === "db" ? { password: "s3cret" } : undefined),
};
const ips = { podIP: "10.88.0.5", hostIP: "10.88.0.1" };

describe("containerEnv", () => {
  it("resolves values, the downward API, ConfigMap and Secret keys, in order with $(VAR) expansion", () => {
    const c: V1Container = {
      name: "main",
      resources: { limits: { cpu: "1500m", memory: "256Mi" } },
      envFrom: [{ configMapRef: { name: "cfg" }, prefix: "CFG_" }],
      env: [
        { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
        { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
        { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
        { name: "ZONE", valueFrom: { fieldRef: { fieldPath: "metadata.labels['zone']" } } },
        { name: "SA", valueFrom: { fieldRef: { fieldPath: "spec.serviceAccountName" } } },
        { name: "CPUS", valueFrom: { resourceFieldRef: { resource: "limits.cpu" } } },
        { name: "MEM", valueFrom: { resourceFieldRef: { resource: "limits.memory", divisor: "1Mi" } } },
        { name: "TICK", valueFrom: { configMapKeyRef: { name: "cfg", key: "tick" } } },
        { name: "PASSWORD", valueFrom: { secretKeyRef: { name: "db", key: "password" } } },
        { name: "MISSING", valueFrom: { secretKeyRef: { name: "nope", key: "x", optional: true } } },
        { name: "URL", value: "postgres://app:$(PASSWORD)@$(POD_IP)/$(UNDEFINED)" },
      ],
    };
    expect(containerEnv(pod, c, lookup, ips)).toEqual({
      CFG_tick: "20",
      CFG_maps: "prontera",
      POD_NAME: "map-0",
      POD_NAMESPACE: "demo",
      POD_IP: "10.88.0.5",
      ZONE: "prt",
      SA: "map",
      CPUS: "2",
      MEM: "256",
      TICK: "20",
      PASSWORD: "s3cret",
      URL: "postgres://app:s3cret@10.88.0.5/$(UNDEFINED)",
    });
  });

  it("fails on a missing required key, so the container waits instead of starting wrong", () => {
    const c: V1Container = {
      name: "m",
      env: [{ name: "X", valueFrom: { configMapKeyRef: { name: "cfg", key: "nope" } } }],
    };
    expect(() => containerEnv(pod, c, lookup, ips)).toThrow(/key nope of cfg/);
  });

  it("expands $(VAR) and unescapes $$", () => {
    expect(expand("$(A)-$$(A)-$(B)", { A: "1" })).toBe("1-$(A)-$(B)");
  });

  it("resourceRef reads quantities with divisors", () => {
    const c: V1Container = { name: "m", resources: { requests: { cpu: "250m" } } };
    expect(resourceRef(c, "requests.cpu")).toBe("1");
    expect(resourceRef(c, "requests.cpu", "1m")).toBe("250");
  });
});

describe("containerArgv", () => {
  const image = { entrypoint: ["node", "workloads/main.ts"], cmd: ["--help"], workingDir: "/app" };
  it("follows the Kubernetes rules for command and args over the image's", () => {
    expect(containerArgv({ name: "m" }, image, {})).toEqual(["node", "workloads/main.ts", "--help"]);
    expect(containerArgv({ name: "m", args: ["gateway"] }, image, {})).toEqual([
      "node",
      "workloads/main.ts",
      "gateway",
    ]);
    expect(containerArgv({ name: "m", command: ["sh"] }, image, {})).toEqual(["sh"]);
    expect(containerArgv({ name: "m", args: ["$(ZONE)"] }, image, { ZONE: "prt" })).toEqual([
      "node",
      "workloads/main.ts",
      "prt",
    ]);
  });

  it("knows the images this repository builds", () => {
    expect(localImage("ghcr.io/hybrid-p2p/workload:0.1.0", "/r")?.entrypoint).toEqual([
      "node",
      "workloads/main.ts",
    ]);
    expect(localImage("localhost/x/operator@sha256:abc", "/r")?.cmd).toEqual(["run"]);
    expect(localImage("docker.io/library/postgres:17", "/r")).toBeUndefined();
  });
});

describe("pod status", () => {
  const running: ObservedContainer = {
    name: "a",
    image: "i",
    state: { kind: "running", startedAt: "t" },
    ready: true,
    restartCount: 0,
  };
  const exited = (exitCode: number): ObservedContainer => ({
    ...running,
    state: { kind: "terminated", exitCode, reason: exitCode ? "Error" : "Completed", finishedAt: "t" },
    ready: false,
  });
  const waiting: ObservedContainer = {
    ...running,
    state: { kind: "waiting", reason: "ContainerCreating" },
    ready: false,
  };
  const obs = (containers: ObservedContainer[], restartPolicy = "Always") => ({
    hostIP: "h",
    podIP: "p",
    containers,
    restartPolicy,
  });

  it("derives the phase as the kubelet does", () => {
    expect(podPhase(obs([waiting]))).toBe("Pending");
    expect(podPhase(obs([running, waiting]))).toBe("Pending");
    expect(podPhase(obs([running]))).toBe("Running");
    expect(podPhase(obs([exited(0)], "Never"))).toBe("Succeeded");
    expect(podPhase(obs([exited(0), exited(2)], "Never"))).toBe("Failed");
    expect(podPhase(obs([exited(2)], "OnFailure"))).toBe("Running");
    // Waiting to restart after a crash counts as running for the phase.
    const crashLoop = { ...waiting, lastTerminated: exited(1).state as never };
    expect(podPhase(obs([crashLoop]))).toBe("Running");
  });

  it("reports Ready only when every container is ready, with IPs", () => {
    const s = podStatus(obs([running, { ...running, name: "b", ready: false }]));
    expect(s.podIP).toBe("p");
    expect(s.podIPs).toEqual([{ ip: "p" }]);
    expect(s.conditions).toContainEqual({ type: "Ready", status: "False", reason: "ContainersNotReady" });
    const ready = podStatus(obs([running]));
    expect(ready.conditions).toContainEqual({ type: "Ready", status: "True" });
    expect((ready.containerStatuses as { started: boolean }[])[0]?.started).toBe(true);
  });

  it("restarts by policy with a capped backoff", () => {
    expect(shouldRestart("Always", 0)).toBe(true);
    expect(shouldRestart("OnFailure", 0)).toBe(false);
    expect(shouldRestart("OnFailure", 1)).toBe(true);
    expect(shouldRestart("Never", 1)).toBe(false);
    expect([1, 2, 3, 10].map(restartBackoffMs)).toEqual([1000, 2000, 4000, 30_000]);
  });

  it("finds named probe ports", () => {
    const c: V1Container = { name: "m", ports: [{ name: "health", containerPort: 8081 }] };
    expect(probePort(c, "health")).toBe(8081);
    expect(probePort(c, 9090)).toBe(9090);
    expect(() => probePort(c, "metrics")).toThrow(/no port named metrics/);
  });
});

describe("volumes", () => {
  const data: VolumeData = {
    configMap: (n: string): Record<string, string> | undefined =>
      n === "kube-root-ca.crt" ? { "ca.crt": "CA" } : n === "cfg" ? { a: "1", b: "2" } : undefined,
    secret: () => undefined,
    token: () => "TOKEN",
    fieldRef: (p: string) => (p === "metadata.namespace" ? "demo" : "?"),
  };

  it("projects the service-account token, CA and namespace where in-cluster clients look", () => {
    const v = {
      name: "kube-api-access-x",
      projected: {
        sources: [
          { serviceAccountToken: { path: "token", expirationSeconds: 3607 } },
          { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
          { downwardAPI: { items: [{ path: "namespace", fieldRef: { fieldPath: "metadata.namespace" } }] } },
        ],
      },
    };
    expect(volumeRefs([v])).toEqual({ configMaps: ["kube-root-ca.crt"], secrets: [], token: true });
    const m = materialize(v, data);
    expect(m.kind === "files" && m.files.map((f) => [f.path, f.content])).toEqual([
      ["token", "TOKEN"],
      ["ca.crt", "CA"],
      ["namespace", "demo"],
    ]);
  });

  it("writes every key of a ConfigMap, or the chosen items; a missing one fails unless optional", () => {
    const all = materialize({ name: "c", configMap: { name: "cfg" } }, data);
    expect(all.kind === "files" && all.files.map((f) => f.path)).toEqual(["a", "b"]);
    const some = materialize(
      { name: "c", configMap: { name: "cfg", items: [{ key: "b", path: "x/b.txt" }] } },
      data,
    );
    expect(some.kind === "files" && some.files).toEqual([{ path: "x/b.txt", content: "2", mode: 0o644 }]);
    expect(() => materialize({ name: "s", secret: { secretName: "nope" } }, data)).toThrow(/not found/);
    expect(materialize({ name: "s", secret: { secretName: "nope", optional: true } }, data)).toEqual({
      kind: "files",
      files: [],
    });
    expect(materialize({ name: "e", emptyDir: {} }, data).kind).toBe("emptyDir");
  });
});
