// Pure parts of the node agent: a container's environment (values, downward API, ConfigMap and
// Secret references), the command a container runs, probe settings, and the pod status the
// agent reports from what it observed. No I/O here; agent.ts does that.
import type { V1Container, V1EnvVar, V1Pod, V1Probe } from "@kubernetes/client-node";

/** Reads ConfigMap and Secret data (Secret values decoded); undefined when missing. */
export interface DataLookup {
  configMap(namespace: string, name: string): Record<string, string> | undefined;
  secret(namespace: string, name: string): Record<string, string> | undefined;
}

/** The value of a downward-API fieldRef, as the kubelet resolves it. */
export function fieldRef(pod: V1Pod, path: string, podIP: string, hostIP: string): string {
  const m = pod.metadata ?? {};
  const keyed = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (keyed) return (keyed[1] === "labels" ? m.labels : m.annotations)?.[keyed[2]!] ?? "";
  switch (path) {
    case "metadata.name":
      return m.name ?? "";
    case "metadata.namespace":
      return m.namespace ?? "";
    case "metadata.uid":
      return m.uid ?? "";
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "default";
    case "status.podIP":
    case "status.podIPs":
      return podIP;
    case "status.hostIP":
    case "status.hostIPs":
      return hostIP;
    default:
      throw new Error(`unsupported fieldRef ${path}`);
  }
}

/** A resourceFieldRef value: CPU in whole cores rounded up (or millicores with divisor 1m), memory in bytes. */
export function resourceRef(c: V1Container, resource: string, divisor = "1"): string {
  const [kind, name] = resource.split(".") as ["limits" | "requests", string];
  const raw = c.resources?.[kind]?.[name];
  if (raw === undefined) return name === "cpu" ? "0" : "0";
  const value = quantity(String(raw));
  return String(Math.ceil(value / quantity(divisor)));
}

const SUFFIX: Record<string, number> = {
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

export function quantity(q: string): number {
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(q.trim());
  if (!m) throw new Error(`bad quantity ${q}`);
  return Number(m[1]) * (m[2] ? (SUFFIX[m[2]] ?? Number.NaN) : 1);
}

/** The container's environment: envFrom first, then env in order ($(VAR) expanded), as the kubelet does. */
export function containerEnv(
  pod: V1Pod,
  c: V1Container,
  lookup: DataLookup,
  ips: { podIP: string; hostIP: string },
): Record<string, string> {
  const ns = pod.metadata?.namespace ?? "default";
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    const data = from.configMapRef
      ? lookup.configMap(ns, from.configMapRef.name!)
      : from.secretRef
        ? lookup.secret(ns, from.secretRef.name!)
        : undefined;
    const optional = from.configMapRef?.optional ?? from.secretRef?.optional ?? false;
    if (data === undefined && !optional) throw new Error(`envFrom: ${JSON.stringify(from)} not found`);
    for (const [k, v] of Object.entries(data ?? {})) env[`${from.prefix ?? ""}${k}`] = v;
  }
  for (const e of c.env ?? []) {
    const v = envValue(pod, c, e, lookup, ips, env);
    if (v !== undefined) env[e.name] = v;
  }
  return env;
}

function envValue(
  pod: V1Pod,
  c: V1Container,
  e: V1EnvVar,
  lookup: DataLookup,
  ips: { podIP: string; hostIP: string },
  defined: Record<string, string>,
): string | undefined {
  if (e.value !== undefined) return expand(e.value, defined);
  const from = e.valueFrom;
  if (!from) return "";
  if (from.fieldRef) return fieldRef(pod, from.fieldRef.fieldPath, ips.podIP, ips.hostIP);
  if (from.resourceFieldRef) {
    return resourceRef(c, from.resourceFieldRef.resource, from.resourceFieldRef.divisor?.toString());
  }
  const ns = pod.metadata?.namespace ?? "default";
  const ref = from.configMapKeyRef ?? from.secretKeyRef;
  if (ref) {
    const data = from.configMapKeyRef ? lookup.configMap(ns, ref.name!) : lookup.secret(ns, ref.name!);
    const v = data?.[ref.key];
    if (v === undefined && !ref.optional)
      throw new Error(`env ${e.name}: key ${ref.key} of ${ref.name} not found`);
    return v;
  }
  return "";
}

/** $(VAR) references to variables defined earlier; $$ escapes; unknown references stay as written. */
export function expand(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (m, name?: string) =>
    m === "$$" ? "$" : name !== undefined && name in vars ? vars[name]! : m,
  );
}

/** Entrypoint and arguments of an image, for running it without a container engine. */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  workingDir: string;
}

/** The argv a container runs: command replaces the entrypoint (and drops the image's CMD),
 * args replace CMD; $(VAR) expanded in both. */
export function containerArgv(c: V1Container, image: ImageConfig, env: Record<string, string>): string[] {
  const entry = c.command ?? image.entrypoint;
  const args = c.args ?? (c.command ? [] : image.cmd);
  return [...entry, ...args].map((a) => expand(a, env));
}

export interface ProbeSettings {
  initialDelayMs: number;
  periodMs: number;
  timeoutMs: number;
  successThreshold: number;
  failureThreshold: number;
}

export function probeSettings(p: V1Probe): ProbeSettings {
  return {
    initialDelayMs: (p.initialDelaySeconds ?? 0) * 1000,
    periodMs: (p.periodSeconds ?? 10) * 1000,
    timeoutMs: (p.timeoutSeconds ?? 1) * 1000,
    successThreshold: p.successThreshold ?? 1,
    failureThreshold: p.failureThreshold ?? 3,
  };
}

/** A probe port: a number, or the name of one of the container's ports. */
export function probePort(c: V1Container, port: number | string): number {
  if (typeof port === "number") return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = c.ports?.find((p) => p.name === port);
  if (!named) throw new Error(`container ${c.name} has no port named ${port}`);
  return named.containerPort;
}

// ---- status ------------------------------------------------------------------------------

export type ContainerState =
  | { kind: "waiting"; reason: string; message?: string }
  | { kind: "running"; startedAt: string }
  | { kind: "terminated"; exitCode: number; reason: string; startedAt?: string; finishedAt: string };

export interface ObservedContainer {
  name: string;
  image: string;
  containerID?: string;
  state: ContainerState;
  lastTerminated?: Extract<ContainerState, { kind: "terminated" }>;
  ready: boolean;
  restartCount: number;
}

export interface ObservedPod {
  podIP?: string;
  hostIP: string;
  startTime?: string;
  containers: ObservedContainer[];
  restartPolicy: string;
}

const cond = (type: string, ok: boolean, reason?: string) => ({
  type,
  status: ok ? "True" : "False",
  ...(reason && !ok ? { reason } : {}),
});

function k8sState(s: ContainerState): Record<string, unknown> {
  switch (s.kind) {
    case "waiting":
      return { waiting: { reason: s.reason, ...(s.message ? { message: s.message } : {}) } };
    case "running":
      return { running: { startedAt: s.startedAt } };
    case "terminated":
      return {
        terminated: {
          exitCode: s.exitCode,
          reason: s.reason,
          finishedAt: s.finishedAt,
          ...(s.startedAt ? { startedAt: s.startedAt } : {}),
        },
      };
  }
}

/** The pod's phase from its containers (the kubelet's getPhase, without init containers): a
 * container waiting to restart counts by its last termination. */
export function podPhase(o: ObservedPod): "Pending" | "Running" | "Succeeded" | "Failed" {
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const c of o.containers) {
    const last =
      c.state.kind === "terminated" ? c.state : c.state.kind === "waiting" ? c.lastTerminated : undefined;
    if (c.state.kind === "running") running++;
    else if (last) {
      stopped++;
      if (last.exitCode === 0) succeeded++;
    } else waiting++;
  }
  if (waiting > 0 || o.containers.length === 0) return "Pending";
  if (running > 0) return "Running";
  if (o.restartPolicy === "Always") return "Running";
  if (stopped === succeeded) return "Succeeded";
  return o.restartPolicy === "OnFailure" ? "Running" : "Failed";
}

/** The status subresource the agent writes (a strategic merge patch: conditions and container
 * statuses merge by type and name, so the scheduler's PodScheduled stays). */
export function podStatus(o: ObservedPod): Record<string, unknown> {
  const phase = podPhase(o);
  const allReady = o.containers.length > 0 && o.containers.every((c) => c.ready);
  const allStarted = o.containers.length > 0 && o.containers.every((c) => c.state.kind !== "waiting");
  return {
    phase,
    hostIP: o.hostIP,
    hostIPs: [{ ip: o.hostIP }],
    ...(o.podIP ? { podIP: o.podIP, podIPs: [{ ip: o.podIP }] } : {}),
    ...(o.startTime ? { startTime: o.startTime } : {}),
    conditions: [
      cond("PodReadyToStartContainers", o.podIP !== undefined),
      cond("Initialized", true),
      cond("ContainersReady", allReady, allStarted ? "ContainersNotReady" : "ContainersNotInitialized"),
      cond("Ready", allReady, "ContainersNotReady"),
    ],
    containerStatuses: o.containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: c.image,
      ...(c.containerID ? { containerID: c.containerID } : {}),
      state: k8sState(c.state),
      lastState: c.lastTerminated ? k8sState(c.lastTerminated) : {},
      ready: c.ready,
      started: c.state.kind === "running",
      restartCount: c.restartCount,
    })),
  };
}

/** Restart delay after the n-th consecutive crash: 1 s doubling to 30 s (the kubelet's is 10 s to 5 min;
 * shorter here so local tests recover quickly). */
export function restartBackoffMs(restarts: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, restarts - 1));
}

/** Whether a pod with this restart policy restarts a container that exited with this code. */
export function shouldRestart(policy: string | undefined, exitCode: number): boolean {
  return policy === undefined || policy === "Always" || (policy === "OnFailure" && exitCode !== 0);
}
