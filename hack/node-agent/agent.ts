// A small kubelet for the local cluster: registers a Node, keeps its Lease and Ready condition
// fresh, watches the pods bound to it, runs them (runtime.ts), probes them and reports their
// status, IPs and readiness; a pod being deleted is stopped within its grace period and then
// removed, as the kubelet does.
import { createSocket, type Socket } from "node:dgram";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { type AddressInfo, createConnection, createServer, type Server } from "node:net";
import { cpus, hostname, release, totalmem } from "node:os";
import { join } from "node:path";
import type { V1ConfigMap, V1Container, V1Pod, V1Probe, V1Secret } from "@kubernetes/client-node";
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { ApiError, KubeClient } from "../../operator/runtime/kube.ts";
import { answer, CLUSTER_DOMAIN, parseQuery, resolveClusterName, type ServiceRecord } from "./dns.ts";
import {
  containerEnv,
  type DataLookup,
  expand,
  fieldRef,
  type ObservedContainer,
  type ObservedPod,
  podStatus,
  probePort,
  probeSettings,
  restartBackoffMs,
  shouldRestart,
} from "./pod.ts";
import { ServiceProxy, type ServiceView, type SliceView } from "./proxy.ts";
import { type Container, PodmanRuntime, ProcessRuntime, type Runtime, type Sandbox } from "./runtime.ts";
import { localVolume, materialize, processKubeconfig, volumeRefs } from "./volumes.ts";

export interface AgentOptions {
  kubeconfig: string;
  nodeName: string;
  /** podman where it is installed, else local processes. */
  runtime?: "podman" | "process" | "auto";
  stateDir: string;
  repoRoot: string;
  kubeletVersion?: string;
  log?: (msg: string) => void;
}

const FIELD_MANAGER = "hybridp2p-node-agent";
const HEARTBEAT_MS = 10_000;
const RESYNC_MS = 10_000;
const PROVISION_MS = 1_000;
const SERVICES_REFRESH_MS = 1_000;
/** The default StorageClass of the local cluster and its provisioner (the node agents). */
export const STORAGE_CLASS = "local";
const PROVISIONER = "node.hybridp2p.io/local";
const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");
const microNow = () => new Date().toISOString().replace(/Z$/, "000Z");

export class NodeAgent {
  private readonly opts: AgentOptions;
  private readonly log: (msg: string) => void;
  private client!: KubeClient;
  private kc!: KubeConfig;
  runtime!: Runtime;
  private hostIP = "127.0.0.1";
  private readonly workers = new Map<string, PodWorker>();
  private timers: NodeJS.Timeout[] = [];
  private watch?: AbortController;
  private stopped = false;
  private forwarder?: Promise<number>;
  private dns?: Promise<void>;
  private records: ServiceRecord[] = [];
  private proxy?: ServiceProxy;
  private refreshing?: Promise<void>;
  private readonly servers: Server[] = [];
  private readonly sockets: Socket[] = [];

  constructor(opts: AgentOptions) {
    this.opts = opts;
    this.log = opts.log ?? ((m) => console.log(`[node-agent] ${m}`));
  }

  get nodeName(): string {
    return this.opts.nodeName;
  }

  async start(): Promise<void> {
    mkdirSync(this.opts.stateDir, { recursive: true });
    this.kc = new KubeConfig();
    this.kc.loadFromFile(this.opts.kubeconfig);
    this.client = await new KubeClient(this.kc).init();
    const want = this.opts.runtime ?? "auto";
    if (want === "podman" || (want === "auto" && PodmanRuntime.available())) {
      const podman = await new PodmanRuntime(this.opts.stateDir, this.nodeName).init();
      this.runtime = podman;
      // Pods reach the host (and the node's address) through their bridge's gateway.
      this.hostIP = podman.gateway;
      if (await ServiceProxy.available()) this.proxy = new ServiceProxy(this.nodeName);
      else this.log("nft is not available: ClusterIPs and NodePorts do not route, DNS answers with pod IPs");
      // DNS records and the service proxy follow the Services and their EndpointSlices; one
      // refresh at a time, so an older listing is never applied after a newer one.
      const refresh = () => {
        if (this.refreshing || this.stopped) return;
        this.refreshing = this.refreshServices()
          .catch((e) => this.log(`services: ${e}`))
          .finally(() => {
            this.refreshing = undefined;
          });
      };
      refresh();
      this.timers.push(setInterval(refresh, SERVICES_REFRESH_MS));
    } else {
      this.runtime = new ProcessRuntime(this.opts.repoRoot);
    }
    await this.runtime.cleanup();
    await this.apply(`/apis/storage.k8s.io/v1/storageclasses/${STORAGE_CLASS}`, {
      apiVersion: "storage.k8s.io/v1",
      kind: "StorageClass",
      metadata: {
        name: STORAGE_CLASS,
        annotations: { "storageclass.kubernetes.io/is-default-class": "true" },
      },
      provisioner: PROVISIONER,
      volumeBindingMode: "WaitForFirstConsumer",
      reclaimPolicy: "Retain",
    });
    await this.heartbeat();
    this.timers.push(
      setInterval(() => void this.heartbeat().catch((e) => this.log(`heartbeat: ${e}`)), HEARTBEAT_MS),
    );
    await this.resync();
    this.timers.push(setInterval(() => void this.resync().catch((e) => this.log(`resync: ${e}`)), RESYNC_MS));
    this.timers.push(
      setInterval(() => void this.provision().catch((e) => this.log(`provision: ${e}`)), PROVISION_MS),
    );
    await this.startWatch();
    this.log(
      `node ${this.nodeName} ready (${this.runtime.name} ${this.runtime.version}, host IP ${this.hostIP})`,
    );
  }

  /** Stops every pod it runs (the Node object stays and turns NotReady, as a stopped kubelet's). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.watch?.abort();
    await Promise.all([...this.workers.values()].map((w) => w.terminate(0)));
    // Anything a worker could not remove (or a pod it never knew of) goes too: no pod outlives its node.
    await this.runtime.cleanup().catch((err) => this.log(`cleanup failed: ${String(err)}`));
    await this.refreshing; // so it cannot write the proxy's rules after they are removed
    await this.proxy?.stop();
    for (const srv of this.servers) srv.close();
    for (const sock of this.sockets) sock.close();
    this.workers.clear();
    this.client.close();
  }

  // ---- the Node and its Lease ----------------------------------------------------------------

  private async apply(path: string, body: unknown): Promise<void> {
    await this.client.request("PATCH", path, {
      query: { fieldManager: FIELD_MANAGER, force: true },
      body,
      contentType: "application/apply-patch+yaml",
    });
  }

  private async heartbeat(): Promise<void> {
    const name = this.nodeName;
    const labels = {
      "kubernetes.io/hostname": name,
      "kubernetes.io/os": "linux",
      "kubernetes.io/arch": process.arch === "x64" ? "amd64" : process.arch,
      "node.hybridp2p.io/runtime": this.runtime.name,
    };
    await this.apply(`/api/v1/nodes/${name}`, { apiVersion: "v1", kind: "Node", metadata: { name, labels } });
    const capacity = {
      cpu: String(cpus().length),
      memory: `${Math.floor(totalmem() / 1024)}Ki`,
      pods: "110",
      "ephemeral-storage": "100Gi",
    };
    const condition = (type: string, status: string, reason: string) => ({
      type,
      status,
      reason,
      message: reason,
      lastHeartbeatTime: now(),
    });
    await this.apply(`/api/v1/nodes/${name}/status`, {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name },
      status: {
        capacity,
        allocatable: capacity,
        conditions: [
          condition("Ready", "True", "KubeletReady"),
          condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
          condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
          condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        ],
        addresses: [
          { type: "InternalIP", address: this.hostIP },
          { type: "Hostname", address: name },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
        nodeInfo: {
          machineID: hostname(),
          systemUUID: hostname(),
          bootID: "",
          kernelVersion: release(),
          osImage: "hybrid-p2p node agent",
          containerRuntimeVersion: `${this.runtime.name}://${this.runtime.version}`,
          kubeletVersion: `v${this.opts.kubeletVersion ?? "1.37.2"}`,
          kubeProxyVersion: "",
          operatingSystem: "linux",
          architecture: labels["kubernetes.io/arch"],
        },
      },
    });
    await this.apply(`/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`, {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name, namespace: "kube-node-lease" },
      spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: microNow() },
    });
  }

  // ---- pods -----------------------------------------------------------------------------------

  private async startWatch(): Promise<void> {
    if (this.stopped) return;
    const restart = (err: unknown) => {
      if (this.stopped) return;
      if (err) this.log(`pod watch ended: ${err}`);
      setTimeout(() => void this.startWatch(), 1000);
    };
    this.watch = await new Watch(this.kc)
      .watch(
        "/api/v1/pods",
        { fieldSelector: `spec.nodeName=${this.nodeName}` },
        (type: string, pod: V1Pod) => this.onPod(type, pod),
        restart,
      )
      .catch((err: unknown) => {
        restart(err);
        return undefined;
      });
  }

  private async resync(): Promise<void> {
    const list = await this.client.request<{ items: V1Pod[] }>("GET", "/api/v1/pods", {
      query: { fieldSelector: `spec.nodeName=${this.nodeName}` },
    });
    const seen = new Set<string>();
    for (const pod of list.items) {
      seen.add(pod.metadata!.uid!);
      this.onPod("MODIFIED", pod);
    }
    for (const [uid, w] of this.workers) if (!seen.has(uid)) this.onPod("DELETED", w.pod);
  }

  private onPod(type: string, pod: V1Pod): void {
    if (this.stopped) return;
    const uid = pod.metadata!.uid!;
    const worker = this.workers.get(uid);
    if (type === "DELETED") {
      if (worker) {
        this.workers.delete(uid);
        void worker.terminate(0);
      }
      return;
    }
    if (pod.metadata?.deletionTimestamp) {
      if (!worker) void this.removePod(pod).catch((e) => this.log(`pod ${podKey(pod)}: delete: ${e}`));
      else if (!worker.terminating) {
        const grace = (pod.metadata.deletionGracePeriodSeconds ?? 30) * 1000;
        void worker
          .terminate(grace)
          .then(() => this.removePod(pod))
          .catch((e) => this.log(`pod ${podKey(pod)}: delete: ${e}`))
          .finally(() => this.workers.delete(uid));
      }
      return;
    }
    if (worker) {
      worker.pod = pod;
      return;
    }
    if (pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed") return;
    const w = new PodWorker(this, pod);
    this.workers.set(uid, w);
    void w.run().catch((e) => this.log(`pod ${podKey(pod)}: ${e}`));
  }

  /** Local storage, as local-path provisioners do it: the default StorageClass waits for the
   * scheduler to pick a node for a claim's pod (WaitForFirstConsumer); the agent of that node
   * then creates a directory-backed PersistentVolume pinned to it. */
  private async provision(): Promise<void> {
    type Claim = Parameters<typeof localVolume>[0] & {
      metadata: { annotations?: Record<string, string> };
      status?: { phase?: string };
    };
    const claims = await this.client.request<{ items: Claim[] }>("GET", "/api/v1/persistentvolumeclaims");
    for (const c of claims.items) {
      if (c.spec.volumeName || c.status?.phase !== "Pending") continue;
      if (c.spec.storageClassName !== STORAGE_CLASS) continue;
      if (c.metadata.annotations?.["volume.kubernetes.io/selected-node"] !== this.nodeName) continue;
      const dir = join(
        this.opts.stateDir,
        "volumes",
        `${c.metadata.namespace}_${c.metadata.name}_${c.metadata.uid}`,
      );
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o777);
      await this.client
        .request("POST", "/api/v1/persistentvolumes", { body: localVolume(c, this.nodeName, dir) })
        .catch((e) => {
          if (!(e instanceof ApiError && e.status === 409)) throw e;
        });
    }
  }

  /** The host directory of a bound claim's local PersistentVolume. */
  async claimPath(namespace: string, claim: string): Promise<string | undefined> {
    const pvc = await this.client.request<{ spec: { volumeName?: string } }>(
      "GET",
      `/api/v1/namespaces/${namespace}/persistentvolumeclaims/${claim}`,
    );
    if (!pvc.spec.volumeName) return undefined;
    const pv = await this.client.request<{ spec: { hostPath?: { path: string } } }>(
      "GET",
      `/api/v1/persistentvolumes/${pvc.spec.volumeName}`,
    );
    return pv.spec.hostPath?.path;
  }

  /** The kubelet's last step: delete the stopped pod for good (uid precondition: not a successor). */
  private async removePod(pod: V1Pod): Promise<void> {
    const { namespace, name, uid } = pod.metadata!;
    await this.client
      .request("DELETE", `/api/v1/namespaces/${namespace}/pods/${name}`, {
        body: { gracePeriodSeconds: 0, preconditions: { uid } },
      })
      .catch((e) => {
        if (!(e instanceof ApiError && (e.status === 404 || e.status === 409))) throw e;
      });
  }

  // ---- what workers use -------------------------------------------------------------------------

  async patchPodStatus(pod: V1Pod, status: Record<string, unknown>): Promise<void> {
    const { namespace, name } = pod.metadata!;
    await this.client
      .request("PATCH", `/api/v1/namespaces/${namespace}/pods/${name}/status`, {
        body: { metadata: { uid: pod.metadata!.uid }, status },
        contentType: "application/strategic-merge-patch+json",
      })
      .catch((e) => {
        if (!(e instanceof ApiError && (e.status === 404 || e.status === 409))) throw e;
      });
  }

  /** ConfigMaps and Secrets the pod's containers reference, fetched once for containerEnv. */
  async dataLookup(pod: V1Pod): Promise<DataLookup> {
    const ns = pod.metadata!.namespace!;
    const configMaps = new Map<string, Record<string, string> | undefined>();
    const secrets = new Map<string, Record<string, string> | undefined>();
    const fromVolumes = volumeRefs(pod.spec!.volumes ?? []);
    for (const name of fromVolumes.configMaps) configMaps.set(name, undefined);
    for (const name of fromVolumes.secrets) secrets.set(name, undefined);
    for (const c of pod.spec!.containers) {
      for (const f of c.envFrom ?? []) {
        if (f.configMapRef?.name) configMaps.set(f.configMapRef.name, undefined);
        if (f.secretRef?.name) secrets.set(f.secretRef.name, undefined);
      }
      for (const e of c.env ?? []) {
        if (e.valueFrom?.configMapKeyRef?.name) configMaps.set(e.valueFrom.configMapKeyRef.name, undefined);
        if (e.valueFrom?.secretKeyRef?.name) secrets.set(e.valueFrom.secretKeyRef.name, undefined);
      }
    }
    const get = async <T>(path: string): Promise<T | undefined> =>
      this.client.request<T>("GET", path).catch((e) => {
        if (e instanceof ApiError && e.status === 404) return undefined;
        throw e;
      });
    for (const name of configMaps.keys()) {
      const cm = await get<V1ConfigMap>(`/api/v1/namespaces/${ns}/configmaps/${name}`);
      configMaps.set(name, cm ? (cm.data ?? {}) : undefined);
    }
    for (const name of secrets.keys()) {
      const s = await get<V1Secret>(`/api/v1/namespaces/${ns}/secrets/${name}`);
      const data = s
        ? Object.fromEntries(
            Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]),
          )
        : undefined;
      secrets.set(name, data && { ...data, ...(s?.stringData ?? {}) });
    }
    return {
      configMap: (_ns, name) => configMaps.get(name),
      secret: (_ns, name) => secrets.get(name),
    };
  }

  /** A token of the pod's ServiceAccount bound to the pod, as the kubelet projects it. */
  async requestToken(pod: V1Pod, source: { audience?: string; expirationSeconds?: number }): Promise<string> {
    const { namespace, name, uid } = pod.metadata!;
    const sa = pod.spec?.serviceAccountName ?? "default";
    const res = await this.client.request<{ status: { token: string } }>(
      "POST",
      `/api/v1/namespaces/${namespace}/serviceaccounts/${sa}/token`,
      {
        body: {
          apiVersion: "authentication.k8s.io/v1",
          kind: "TokenRequest",
          spec: {
            audiences: source.audience ? [source.audience] : [],
            expirationSeconds: source.expirationSeconds ?? 3607,
            boundObjectRef: { apiVersion: "v1", kind: "Pod", name, uid },
          },
        },
      },
    );
    return res.status.token;
  }

  /** Where pods reach the API server. The apiserver listens on loopback only; a podman pod has
   * its own network namespace, so the agent forwards a port on the bridge's gateway to it, and
   * pods use the name kubernetes.default.svc, which the serving certificate carries. */
  async apiEndpoint(): Promise<{ host: string; port: number }> {
    const server = this.client.server;
    const apiPort = Number(server.port || 443);
    if (this.runtime.name === "process") return { host: server.hostname, port: apiPort };
    this.forwarder ??= new Promise((resolve, reject) => {
      const srv = createServer((sock) => {
        const up = createConnection({ host: server.hostname, port: apiPort });
        sock.pipe(up).pipe(sock);
        const close = () => {
          sock.destroy();
          up.destroy();
        };
        sock.on("error", close);
        up.on("error", close);
      });
      srv.once("error", reject);
      srv.listen(0, this.hostIP, () => {
        this.servers.push(srv);
        resolve((srv.address() as AddressInfo).port);
      });
    });
    return { host: "kubernetes.default.svc", port: await this.forwarder };
  }

  /** Serves cluster DNS on the bridge gateway for podman pods (dns.ts), once the bridge exists. */
  ensureDns(): Promise<void> {
    if (this.runtime.name === "process") return Promise.resolve();
    this.dns ??= new Promise((resolve, reject) => {
      const upstream =
        /^nameserver\s+(\S+)/m.exec(readFileSync("/etc/resolv.conf", "utf8"))?.[1] ?? "8.8.8.8";
      const sock = createSocket("udp4");
      sock.on("message", (msg, from) => {
        const q = parseQuery(msg);
        if (!q) return;
        const r = resolveClusterName(q.name, this.records, this.hostIP);
        if (r !== undefined) {
          sock.send(answer(q, r ?? undefined), from.port, from.address);
          return;
        }
        // Not a cluster name: relay to the host's resolver.
        const relay = createSocket("udp4");
        const timer = setTimeout(() => relay.close(), 5000);
        relay.once("message", (reply) => {
          clearTimeout(timer);
          sock.send(reply, from.port, from.address);
          relay.close();
        });
        relay.once("error", () => relay.close());
        relay.send(msg, 53, upstream);
      });
      sock.once("error", reject);
      sock.bind(53, this.hostIP, () => {
        this.sockets.push(sock);
        resolve();
      });
    });
    return this.dns;
  }

  private async refreshServices(): Promise<void> {
    type Slice = SliceView & {
      endpoints?: { addresses: string[]; hostname?: string; conditions?: { ready?: boolean } }[];
    };
    const slices = await this.client.request<{ items: Slice[] }>(
      "GET",
      "/apis/discovery.k8s.io/v1/endpointslices",
    );
    const services = await this.client.request<{ items: ServiceView[] }>("GET", "/api/v1/services");
    this.records = services.items.map((svc) => {
      const endpoints = slices.items
        .filter(
          (sl) =>
            sl.metadata.namespace === svc.metadata.namespace &&
            sl.metadata.labels?.["kubernetes.io/service-name"] === svc.metadata.name,
        )
        .flatMap((sl) => sl.endpoints ?? [])
        .filter((e) => e.conditions?.ready !== false && e.addresses[0])
        .map((e) => ({ ip: e.addresses[0]!, hostname: e.hostname }));
      // With the proxy a Service's name resolves to its ClusterIP, as CoreDNS answers; only while
      // it has ready endpoints, since the proxy has no rule (and so no quick refusal) without.
      const routed = this.proxy && svc.spec?.clusterIP !== "None" && endpoints.length > 0;
      return {
        namespace: svc.metadata.namespace,
        name: svc.metadata.name,
        clusterIP: routed ? svc.spec?.clusterIP : undefined,
        endpoints,
      };
    });
    if (this.proxy && !this.stopped) await this.proxy.apply(this.hostIP, services.items, slices.items);
  }

  /** The resolver settings of a podman pod in this namespace, as the kubelet writes resolv.conf. */
  dnsConfig(namespace: string): { server: string; search: string[] } | undefined {
    if (this.runtime.name === "process") return undefined;
    return {
      server: this.hostIP,
      search: [`${namespace}.svc.${CLUSTER_DOMAIN}`, `svc.${CLUSTER_DOMAIN}`, CLUSTER_DOMAIN],
    };
  }

  /** /etc/hosts entries of every podman pod: the API server's names, at the gateway. */
  apiHosts(): Record<string, string> {
    if (this.runtime.name === "process") return {};
    return {
      "kubernetes.default.svc": this.hostIP,
      "kubernetes.default": this.hostIP,
      kubernetes: this.hostIP,
    };
  }

  get server(): string {
    return this.client.server.toString().replace(/\/$/, "");
  }

  get host(): string {
    return this.hostIP;
  }

  get options(): AgentOptions {
    return this.opts;
  }

  logLine(msg: string): void {
    this.log(msg);
  }
}

const podKey = (pod: V1Pod) => `${pod.metadata?.namespace}/${pod.metadata?.name}`;

interface ContainerSlot {
  spec: V1Container;
  observed: ObservedContainer;
  running?: Container;
  timers: NodeJS.Timeout[];
}

/** One pod on this node: its sandbox, containers, probes and status reports. */
class PodWorker {
  pod: V1Pod;
  terminating = false;
  private readonly agent: NodeAgent;
  private sandbox?: Sandbox;
  private readonly slots: ContainerSlot[];
  private startTime?: string;
  private readonly volumeDirs = new Map<string, string>();
  private api?: { host: string; port: number };
  private kubeconfig?: string;
  private tokenTimer?: NodeJS.Timeout;
  private publishTimer?: NodeJS.Timeout;
  private publishing: Promise<void> = Promise.resolve();

  constructor(agent: NodeAgent, pod: V1Pod) {
    this.agent = agent;
    this.pod = pod;
    this.slots = pod.spec!.containers.map((c) => ({
      spec: c,
      observed: {
        name: c.name,
        image: c.image ?? "",
        state: { kind: "waiting", reason: "ContainerCreating" },
        ready: false,
        restartCount: 0,
      },
      timers: [],
    }));
  }

  private get key(): string {
    const m = this.pod.metadata!;
    return `${m.namespace}_${m.name}_${m.uid!.slice(0, 8)}`;
  }

  async run(): Promise<void> {
    this.startTime = now();
    try {
      this.sandbox = await this.agent.runtime.sandbox(
        this.key,
        this.pod.metadata!.name!,
        this.agent.apiHosts(),
        this.agent.dnsConfig(this.pod.metadata!.namespace!),
      );
      this.api = await this.agent.apiEndpoint();
      await this.agent.ensureDns();
      await this.prepareVolumes();
      // Bound tokens expire after an hour: rewrite them well before, as the kubelet does.
      this.tokenTimer = setInterval(
        () =>
          void this.prepareVolumes().catch((e) =>
            this.agent.logLine(`pod ${podKey(this.pod)}: volumes: ${e}`),
          ),
        40 * 60_000,
      );
    } catch (e) {
      for (const s of this.slots)
        s.observed.state = { kind: "waiting", reason: "CreatePodSandboxError", message: String(e) };
      this.publish();
      throw e;
    }
    this.publish();
    for (const slot of this.slots) await this.startContainer(slot);
  }

  private get dir(): string {
    return join(this.agent.options.stateDir, "pods", this.key);
  }

  /** Writes the pod's volumes under its directory; with a service-account token and no way to
   * mount it at the in-cluster path (local processes), also a kubeconfig that points at it. */
  private async prepareVolumes(): Promise<void> {
    const pod = this.pod;
    const ns = pod.metadata!.namespace!;
    const lookup = await this.agent.dataLookup(pod);
    const tokens = new Map<string, string>();
    const tokenKey = (t: { audience?: string; expirationSeconds?: number }) =>
      `${t.audience}|${t.expirationSeconds}`;
    let tokenFile: string | undefined;
    let caFile: string | undefined;
    for (const v of pod.spec?.volumes ?? []) {
      for (const src of v.projected?.sources ?? []) {
        const t = src.serviceAccountToken;
        if (!t) continue;
        tokens.set(tokenKey(t), await this.agent.requestToken(pod, t));
        tokenFile = join(this.dir, "volumes", v.name, t.path);
        caFile = join(this.dir, "volumes", v.name, "ca.crt");
      }
    }
    for (const v of pod.spec?.volumes ?? []) {
      const m = materialize(v, {
        configMap: (name) => lookup.configMap(ns, name),
        secret: (name) => lookup.secret(ns, name),
        token: (t) => tokens.get(tokenKey(t))!,
        fieldRef: (path) => fieldRef(pod, path, this.sandbox!.ip, this.agent.host),
      });
      const dir = join(this.dir, "volumes", v.name);
      if (m.kind === "hostPath") this.volumeDirs.set(v.name, m.path);
      else if (m.kind === "claim") {
        const path = await this.agent.claimPath(ns, m.claimName);
        if (!path) throw new Error(`PersistentVolumeClaim ${m.claimName} is not bound`);
        this.volumeDirs.set(v.name, path);
      } else if (m.kind === "unsupported") this.agent.logLine(`pod ${podKey(pod)}: ${m.reason}`);
      else {
        mkdirSync(dir, { recursive: true });
        // Writable by the image's non-root user, as an emptyDir is in a real cluster.
        if (m.kind === "emptyDir") chmodSync(dir, 0o777);
        for (const f of m.kind === "files" ? m.files : []) {
          mkdirSync(join(dir, f.path, ".."), { recursive: true });
          writeFileSync(join(dir, f.path), f.content, { mode: f.mode });
          chmodSync(join(dir, f.path), f.mode);
        }
        this.volumeDirs.set(v.name, dir);
      }
    }
    if (this.agent.runtime.name === "process" && tokenFile && caFile) {
      this.kubeconfig = join(this.dir, "kubeconfig.json");
      writeFileSync(this.kubeconfig, processKubeconfig(this.agent.server, caFile, tokenFile, ns));
    }
  }

  private async startContainer(slot: ContainerSlot): Promise<void> {
    if (this.terminating || !this.sandbox) return;
    const c = slot.spec;
    let running: Container;
    try {
      const lookup = await this.agent.dataLookup(this.pod);
      // As the kubelet: the API server's address first, the container's own variables over it.
      const env = {
        KUBERNETES_SERVICE_HOST: this.api!.host,
        KUBERNETES_SERVICE_PORT: String(this.api!.port),
        ...(this.kubeconfig ? { KUBECONFIG: this.kubeconfig } : {}),
        ...containerEnv(this.pod, c, lookup, { podIP: this.sandbox.ip, hostIP: this.agent.host }),
      };
      const logDir = this.dir;
      mkdirSync(logDir, { recursive: true });
      const mounts = (c.volumeMounts ?? []).flatMap((m) => {
        const host = this.volumeDirs.get(m.name);
        if (!host) return [];
        const hostPath = m.subPath ? join(host, m.subPath) : host;
        return [{ hostPath, containerPath: m.mountPath, readOnly: m.readOnly ?? false }];
      });
      const sc = { ...this.pod.spec?.securityContext, ...c.securityContext };
      const user =
        sc.runAsUser === undefined
          ? undefined
          : `${sc.runAsUser}${sc.runAsGroup === undefined ? "" : `:${sc.runAsGroup}`}`;
      running = await this.sandbox.start({
        name: c.name,
        image: c.image ?? "",
        command: c.command?.map((a) => expand(a, env)),
        args: c.args?.map((a) => expand(a, env)),
        env,
        workingDir: c.workingDir,
        user,
        mounts,
        logFile: join(logDir, `${c.name}.log`),
      });
    } catch (e) {
      slot.observed.state = { kind: "waiting", reason: "CreateContainerError", message: String(e) };
      this.publish();
      this.agent.logLine(`pod ${podKey(this.pod)} container ${c.name}: ${e}`);
      // Retried like a crash: the ConfigMap or image may appear.
      slot.timers.push(
        setTimeout(() => void this.startContainer(slot), restartBackoffMs(++slot.observed.restartCount)),
      );
      return;
    }
    if (this.terminating) {
      await running.stop(0);
      return;
    }
    const startedAt = now();
    slot.running = running;
    slot.observed.containerID = running.id;
    slot.observed.state = { kind: "running", startedAt };
    slot.observed.ready = !c.readinessProbe;
    this.publish();
    if (c.readinessProbe) this.probe(slot, running, c.readinessProbe, (ok) => this.setReady(slot, ok));
    if (c.livenessProbe) {
      this.probe(slot, running, c.livenessProbe, (ok) => {
        if (!ok) {
          this.agent.logLine(
            `pod ${podKey(this.pod)} container ${c.name}: liveness probe failed, restarting`,
          );
          void running.stop((this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000);
        }
      });
    }
    const code = await running.exited;
    for (const t of slot.timers.splice(0)) clearTimeout(t);
    slot.running = undefined;
    slot.observed.ready = false;
    const terminated = {
      kind: "terminated" as const,
      exitCode: code,
      reason: code === 0 ? "Completed" : "Error",
      startedAt,
      finishedAt: now(),
    };
    if (this.terminating) {
      slot.observed.state = terminated;
      return;
    }
    if (shouldRestart(this.pod.spec?.restartPolicy, code)) {
      slot.observed.lastTerminated = terminated;
      slot.observed.state = { kind: "waiting", reason: "CrashLoopBackOff", message: `exited with ${code}` };
      slot.observed.restartCount++;
      slot.timers.push(
        setTimeout(() => void this.startContainer(slot), restartBackoffMs(slot.observed.restartCount)),
      );
    } else {
      slot.observed.state = terminated;
    }
    this.publish();
  }

  private setReady(slot: ContainerSlot, ready: boolean): void {
    if (slot.observed.ready === ready) return;
    slot.observed.ready = ready;
    this.publish();
  }

  /** Runs a probe on its period; reports a result only when a threshold is crossed. */
  private probe(slot: ContainerSlot, running: Container, p: V1Probe, report: (ok: boolean) => void): void {
    const s = probeSettings(p);
    let successes = 0;
    let failures = 0;
    const tick = async () => {
      if (slot.running !== running || this.terminating) return;
      const ok = await this.check(slot.spec, running, p, s.timeoutMs).catch(() => false);
      if (ok) {
        failures = 0;
        if (++successes >= s.successThreshold) report(true);
      } else {
        successes = 0;
        if (++failures >= s.failureThreshold) report(false);
      }
      if (slot.running === running && !this.terminating)
        slot.timers.push(setTimeout(() => void tick(), s.periodMs));
    };
    slot.timers.push(setTimeout(() => void tick(), s.initialDelayMs));
  }

  private async check(c: V1Container, running: Container, p: V1Probe, timeoutMs: number): Promise<boolean> {
    const ip = this.sandbox!.ip;
    if (p.httpGet) {
      const port = probePort(c, p.httpGet.port as number | string);
      const scheme = (p.httpGet.scheme ?? "HTTP").toLowerCase();
      const headers = Object.fromEntries((p.httpGet.httpHeaders ?? []).map((h) => [h.name, h.value]));
      const res = await fetch(`${scheme}://${p.httpGet.host ?? ip}:${port}${p.httpGet.path ?? "/"}`, {
        headers,
        signal: AbortSignal.timeout(timeoutMs),
        redirect: "manual",
      });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 400;
    }
    if (p.tcpSocket) {
      const port = probePort(c, p.tcpSocket.port as number | string);
      return new Promise<boolean>((resolve) => {
        const sock = createConnection({ host: p.tcpSocket!.host ?? ip, port, timeout: timeoutMs });
        sock.once("connect", () => {
          sock.destroy();
          resolve(true);
        });
        sock.once("error", () => resolve(false));
        sock.once("timeout", () => {
          sock.destroy();
          resolve(false);
        });
      });
    }
    if (p.exec?.command) return (await running.exec(p.exec.command, timeoutMs)) === 0;
    throw new Error("unsupported probe");
  }

  /** Coalesces status writes: one in flight, the latest state wins. */
  private publish(): void {
    if (this.publishTimer) return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined;
      const observed: ObservedPod = {
        podIP: this.sandbox?.ip,
        hostIP: this.agent.host,
        startTime: this.startTime,
        restartPolicy: this.pod.spec?.restartPolicy ?? "Always",
        containers: this.slots.map((s) => s.observed),
      };
      const status = podStatus(observed);
      this.publishing = this.publishing
        .then(() => this.agent.patchPodStatus(this.pod, status))
        .catch((e) => this.agent.logLine(`pod ${podKey(this.pod)}: status: ${e}`));
    }, 50);
  }

  async terminate(graceMs: number): Promise<void> {
    this.terminating = true;
    clearInterval(this.tokenTimer);
    for (const s of this.slots) for (const t of s.timers.splice(0)) clearTimeout(t);
    await Promise.all(this.slots.map((s) => s.running?.stop(graceMs)));
    await this.sandbox?.remove();
    clearTimeout(this.publishTimer);
    await this.publishing;
  }
}
