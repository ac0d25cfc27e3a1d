// A real Kubernetes node on this host for the local cluster: containerd with runc, the kubelet,
// kube-proxy (nftables), the CNI bridge/host-local/portmap/loopback plugins, CoreDNS, kube-router
// as the NetworkPolicy enforcer and local-path-provisioner as the default StorageClass, all from
// the pinned builds in hack/ (hack/build-binaries.sh node). See shared notes/real-node.md.
//
// A node owns host-wide state (netfilter rules, a bridge, sysctls, the kubelet's cgroups), so one
// runs per machine at a time: LocalNode.claim() takes /run/hybridp2p/node.lock, waiting for another
// node to stop, and records what it will change. stop() undoes all of it, and so does the next
// claim() after a crash (or `node testkit/local/node.ts cleanup`): processes, mounts, links,
// iptables chains and rules, ipsets, nftables tables, IPAM state, cgroups, files and sysctls.
import { execFile, execFileSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Proc, startProcess, waitUntil } from "../processes.ts";

/** The local cluster's addresses. The node's own address is the pod network's gateway on the CNI
 * bridge, which the node creates before anything starts (this kernel has no dummy interfaces):
 * the API server binds there and pods reach it as the kubernetes Service's endpoint; nothing else
 * on the machine uses it, and no traffic leaves the machine. */
export const NET = {
  bridge: "hp2p-br0",
  nodeIP: "10.244.0.1",
  clusterCIDR: "10.244.0.0/16",
  nodePodCIDR: "10.244.0.0/24",
  serviceCIDR: "10.96.0.0/16",
  /** The kubernetes Service's ClusterIP: the first of the range. In the API server's certificate. */
  kubernetesIP: "10.96.0.1",
  dnsIP: "10.96.0.10",
  clusterDomain: "cluster.local",
} as const;

const RUN_DIR = "/run/hybridp2p";
const LOCK = join(RUN_DIR, "node.lock");
const RECORD = join(RUN_DIR, "host.json");
const CONTAINERD_STATE = join(RUN_DIR, "containerd");
const CONTAINERD_SOCK = join(CONTAINERD_STATE, "containerd.sock");
const RUNC_ROOT = join(RUN_DIR, "runc");
const KUBELET_PORT = 10250;

/** Paths the kubelet, containerd or the CNI plugins may create outside the node's own folders
 * (some are hard-coded: the kubelet's device-plugin socket dir, /var/log/containers). Removed at
 * stop when they did not exist before. */
const HOST_PATHS = [
  "/var/lib/kubelet",
  "/var/log/pods",
  "/var/log/containers",
  "/var/lib/cni",
  "/run/netns",
  "/var/run/netns",
  "/opt/containerd",
  "/var/lib/containerd",
  "/run/containerd",
  "/etc/containerd",
  "/var/run/nri",
  "/etc/nri",
  "/opt/nri",
  "/etc/kubernetes",
  "/var/lib/kube-proxy",
  "/var/lib/kube-router",
];

/** Sysctls the kubelet (setupKernelTunables), kube-proxy, the CNI bridge plugin or kube-router
 * may write. Recorded at claim, restored at stop. Per-interface forwarding is added at claim. */
const SYSCTLS = [
  "vm.overcommit_memory",
  "vm.panic_on_oom",
  "kernel.panic",
  "kernel.panic_on_oops",
  "kernel.keys.root_maxkeys",
  "kernel.keys.root_maxbytes",
  "net.ipv4.ip_forward",
  "net.ipv4.conf.all.forwarding",
  "net.ipv4.conf.default.forwarding",
  "net.ipv6.conf.all.forwarding",
  "net.ipv6.conf.default.forwarding",
  "net.ipv4.conf.all.route_localnet",
  "net.ipv4.conf.all.rp_filter",
  "net.ipv4.conf.default.rp_filter",
  "net.bridge.bridge-nf-call-iptables",
  "net.bridge.bridge-nf-call-ip6tables",
  "net.bridge.bridge-nf-call-arptables",
  "net.netfilter.nf_conntrack_max",
  "net.netfilter.nf_conntrack_tcp_timeout_established",
  "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
  "net.netfilter.nf_conntrack_tcp_be_liberal",
];

const TABLES = ["filter", "nat", "mangle", "raw", "security"];
/** Chain names of the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT), kube-proxy,
 * kube-router (KUBE-ROUTER-*, KUBE-NWPLCY-*, KUBE-POD-FW-*) and the CNI portmap plugin. */
const OUR_CHAIN = /^(KUBE-|CNI-HOSTPORT-)/;
/** kube-router's ipsets. */
const OUR_IPSET = /^(inet6:)?(KUBE-|kube-router)/;

interface HostRecord {
  pid: number;
  stateDir: string;
  containerdRoot: string;
  sysctls: Record<string, string>;
  existed: Record<string, boolean>;
  chains: Record<string, string[]>;
  ipsets: string[];
  nftTables: string[];
  cgroups: string[];
  /** Processes the node started, for a later claim to stop if this one dies without stopping;
   * `adopted` ones (the cluster's control plane) are stopped by their owner when all goes well. */
  procs: { name: string; pid: number; exe: string; adopted?: boolean }[];
}

const repoRoot = new URL("../..", import.meta.url).pathname;

export function binDir(): string {
  const cache =
    process.env.HYBRIDP2P_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? "/root", ".cache"), "hybrid-p2p");
  return join(cache, "bin");
}

function nodeBin(name: string): string {
  const path = join(binDir(), name);
  if (!existsSync(path)) {
    throw new Error(
      `${name} is not built. Run: bash ${join(repoRoot, "hack/build-binaries.sh")} node  (expected at ${path})`,
    );
  }
  return path;
}

/** The images the node itself needs (pause, CoreDNS, local-path-provisioner and its helper):
 * docker-archive tars hack/build-binaries.sh makes; the image name is inside each. */
const ADDON_IMAGES = ["pause-image", "coredns-image", "local-path-provisioner-image", "busybox-image"];

// ---- small synchronous helpers (cleanup must also run in an exit hook) -----------------------

const PATH = `${binDir()}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, {
    encoding: "utf8",
    input,
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, PATH },
    maxBuffer: 64 * 1024 * 1024,
  });
}

function tryRun(cmd: string, args: string[], input?: string): string | undefined {
  try {
    return run(cmd, args, input);
  } catch {
    return undefined;
  }
}

const runAsync = promisify(execFile);

function sysctlPath(key: string): string {
  return join("/proc/sys", ...key.split("."));
}

function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(sysctlPath(key), "utf8").trim();
  } catch {
    return undefined;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** Interface names, from /sys/class/net. */
function links(): string[] {
  return readdirSync("/sys/class/net");
}

/** Sysctls to record: the fixed list plus each existing interface's forwarding switches. */
function sysctlKeys(): string[] {
  const perLink = links().flatMap((l) => [
    `net.ipv4.conf.${l}.forwarding`,
    `net.ipv6.conf.${l}.forwarding`,
    `net.ipv4.conf.${l}.route_localnet`,
  ]);
  return [...SYSCTLS, ...perLink];
}

function iptablesChains(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const fam of ["iptables", "ip6tables"]) {
    for (const t of TABLES) {
      const saved = tryRun(`${fam}-save`, ["-t", t]) ?? "";
      out[`${fam}/${t}`] = saved
        .split("\n")
        .filter((l) => l.startsWith(":"))
        .map((l) => l.slice(1).split(" ")[0]!);
    }
  }
  return out;
}

function ipsets(): string[] {
  return (tryRun("ipset", ["list", "-n"]) ?? "").split("\n").filter(Boolean);
}

function nftTables(): string[] {
  return (tryRun("nft", ["list", "tables"]) ?? "")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("table "))
    .map((l) => l.slice("table ".length));
}

/** cgroup (v1 controllers and the v2 mount) folders the kubelet makes: kubepods and below. */
function kubeCgroups(): string[] {
  const root = "/sys/fs/cgroup";
  const found: string[] = [];
  for (const c of existsSync(root) ? readdirSync(root) : []) {
    for (const name of ["kubepods", "kubepods.slice"]) {
      const dir = join(root, c, name);
      if (existsSync(dir)) found.push(dir);
    }
  }
  return found;
}

function mountPoints(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) =>
      l.split(" ")[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    );
}

// ---- what the host looks like, for tests that check a stop leaves it as it was ----------------

/** A comparable picture of the host state a node touches. */
export function hostSnapshot(): Record<string, string> {
  const volatile =
    /^(kernel\.(random|ns_last_pid|pty\.nr|sched_domain|perf_|tainted)|fs\.(dentry-state|inode-nr|inode-state|file-nr|aio-nr|quota|binfmt_misc)|net\.netfilter\.nf_conntrack_count|vm\.(stat_refresh|drop_caches|compact_memory)|net\.ipv4\.route\.flush|net\.ipv6\.route\.flush|kernel\.(hung_task_detect_count|warn_count|oops_count|ftrace|unprivileged_bpf))/;
  const sysctls = (tryRun("sysctl", ["-a"]) ?? "")
    .split("\n")
    .filter((l) => l && !volatile.test(l))
    .sort()
    .join("\n");
  const strip = (s: string | undefined) =>
    (s ?? "")
      .split("\n")
      .filter((l) => !l.startsWith("#"))
      .map((l) => l.replace(/\[\d+:\d+\]/g, ""))
      .join("\n");
  return {
    iptables: strip(tryRun("iptables-save", [])),
    ip6tables: strip(tryRun("ip6tables-save", [])),
    // Stateless: rule counters of other users of netfilter (podman) change on their own.
    // `-s` leaves the counters of rules iptables-nft wrote (podman's netavark chains): drop them too.
    nft: (tryRun("nft", ["-s", "list", "ruleset"]) ?? "").replace(
      /counter packets \d+ bytes \d+/g,
      "counter",
    ),
    links: (tryRun("ip", ["-o", "link", "show"]) ?? "")
      .split("\n")
      .map((l) => l.replace(/^\d+: /, "").replace(/ link\/.*$/, ""))
      .join("\n"),
    addresses: (tryRun("ip", ["-o", "addr", "show"]) ?? "")
      .replace(/^\d+: /gm, "")
      .replace(/valid_lft.*$/gm, ""),
    routes: tryRun("ip", ["route", "show", "table", "all"]) ?? "",
    ipsets: ipsets().join("\n"),
    sysctls,
    mounts: mountPoints().sort().join("\n"),
    cgroups: kubeCgroups().join("\n"),
    paths: HOST_PATHS.filter((p) => existsSync(p)).join("\n"),
    run: existsSync(RUN_DIR) ? "present" : "absent",
  };
}

// ---- claiming the host ---------------------------------------------------------------------------

function record(stateDir: string, containerdRoot: string): HostRecord {
  return {
    pid: process.pid,
    stateDir,
    containerdRoot,
    sysctls: Object.fromEntries(
      sysctlKeys()
        .map((k): [string, string | undefined] => [k, readSysctl(k)])
        .filter((e): e is [string, string] => e[1] !== undefined),
    ),
    existed: Object.fromEntries(HOST_PATHS.map((p) => [p, existsSync(p)])),
    chains: iptablesChains(),
    ipsets: ipsets(),
    nftTables: nftTables(),
    cgroups: kubeCgroups(),
    procs: [],
  };
}

function saveRecord(rec: HostRecord): void {
  writeFileSync(RECORD, JSON.stringify(rec, null, 1));
}

function loadRecord(): HostRecord | undefined {
  try {
    return JSON.parse(readFileSync(RECORD, "utf8")) as HostRecord;
  } catch {
    return undefined;
  }
}

/** Takes the host's node lock, waiting while another live process holds it. A lock left by a dead
 * process is cleaned up after (its record says what to undo) and taken over. */
async function takeLock(log: (m: string) => void): Promise<void> {
  mkdirSync(RUN_DIR, { recursive: true });
  const waitMs = Number(process.env.HYBRIDP2P_NODE_WAIT_MS ?? 30 * 60_000);
  const deadline = Date.now() + waitMs;
  let said = false;
  for (;;) {
    try {
      closeSync(openSync(LOCK, "wx"));
      writeFileSync(LOCK, String(process.pid));
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") {
        // The folder went with a node that stopped just now.
        mkdirSync(RUN_DIR, { recursive: true });
        continue;
      }
      if (code !== "EEXIST") throw err;
    }
    let holder: number;
    let starting: boolean;
    try {
      holder = Number(readFileSync(LOCK, "utf8").trim() || "0");
      // An empty lock a moment old: another process is between creating it and writing its pid.
      starting = holder === 0 && Date.now() - statSync(LOCK).mtimeMs < 10_000;
    } catch {
      continue; // released in between: try again
    }
    if (starting || (holder && holder !== process.pid && alive(holder))) {
      if (!said) log(`waiting for the local node of process ${holder} to stop (one node per machine)`);
      said = true;
      if (Date.now() > deadline)
        throw new Error(`the local node of process ${holder} still runs after ${waitMs} ms`);
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    const stale = loadRecord();
    log(`cleaning up after a local node that did not stop (process ${holder || "unknown"})`);
    if (stale) cleanupHost(stale, log);
    rmSync(RECORD, { force: true });
    rmSync(LOCK, { force: true });
  }
}

// ---- cleanup ------------------------------------------------------------------------------------

/** Undoes everything a node changed on the host, as far as `rec` (taken before it started) tells.
 * Idempotent and synchronous, so it also runs from an exit hook. */
export function cleanupHost(rec: HostRecord, log: (m: string) => void = () => {}, recovering = true): void {
  const step = (what: string, f: () => void) => {
    try {
      f();
    } catch (err) {
      log(`cleanup: ${what}: ${(err as Error).message.split("\n")[0]}`);
    }
  };
  // 1. Processes: the node's own (checked by executable, a pid may have been reused), then its
  // container shims (they name the node's containerd socket) and the containers runc still knows.
  step("processes", () => {
    const mine = rec.procs.filter(
      (p) => (recovering || !p.adopted) && alive(p.pid) && exeOf(p.pid) === p.exe,
    );
    for (const p of mine) process.kill(p.pid, "SIGKILL");
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      let cmd = "";
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue;
      }
      if (cmd.includes("containerd-shim") && cmd.includes(CONTAINERD_STATE))
        process.kill(Number(pid), "SIGKILL");
    }
    for (const ns of existsSync(RUNC_ROOT) ? readdirSync(RUNC_ROOT) : []) {
      const root = join(RUNC_ROOT, ns);
      for (const id of (tryRun("runc", ["--root", root, "list", "-q"]) ?? "").split("\n").filter(Boolean))
        tryRun("runc", ["--root", root, "delete", "--force", id]);
    }
    const until = Date.now() + 10_000;
    while (mine.some((p) => alive(p.pid)) && Date.now() < until) sleepSync(100);
  });
  // 2. Mounts under the node's folders, deepest first (pod volumes, the kubelet's own root-dir
  // bind mount, container root filesystems, network namespaces).
  step("mounts", () => {
    const prefixes = [
      rec.stateDir,
      RUN_DIR,
      rec.containerdRoot,
      "/var/lib/kubelet",
      "/run/netns",
      "/var/run/netns",
    ]
      .filter(Boolean)
      .map((p) => (p.endsWith("/") ? p : `${p}/`));
    for (let pass = 0; pass < 3; pass++) {
      const ours = mountPoints()
        .filter((m) => prefixes.some((p) => `${m}/`.startsWith(p)))
        .sort((a, b) => b.length - a.length);
      if (ours.length === 0) break;
      for (const m of ours) if (tryRun("umount", [m]) === undefined) tryRun("umount", ["-l", m]);
    }
  });
  // 3. Links: veths still on the bridge, then the bridge.
  step("links", () => {
    const onBridge = (tryRun("ip", ["-o", "link", "show", "master", NET.bridge]) ?? "")
      .split("\n")
      .map((l) => l.split(": ")[1]?.split("@")[0])
      .filter((n): n is string => Boolean(n));
    for (const l of onBridge) tryRun("ip", ["link", "delete", l]);
    if (links().includes(NET.bridge)) run("ip", ["link", "delete", NET.bridge]);
  });
  // 4. iptables: rules in other chains that jump to ours, then our chains (flushed, deleted).
  step("iptables", () => {
    for (const fam of ["iptables", "ip6tables"]) {
      for (const t of TABLES) {
        const before = new Set(rec.chains[`${fam}/${t}`] ?? []);
        const saved = tryRun(`${fam}-save`, ["-t", t]);
        if (!saved) continue;
        const lines = saved.split("\n");
        const ours = lines
          .filter((l) => l.startsWith(":"))
          .map((l) => l.slice(1).split(" ")[0]!)
          .filter((c) => OUR_CHAIN.test(c) && !before.has(c));
        if (ours.length === 0) continue;
        const oursSet = new Set(ours);
        const refs = lines.filter((l) => {
          if (!l.startsWith("-A ")) return false;
          const chain = l.split(" ")[1]!;
          if (oursSet.has(chain)) return false;
          const target = / -[jg] (\S+)/.exec(l)?.[1];
          return target !== undefined && oursSet.has(target);
        });
        const script = [
          `*${t}`,
          ...refs.map((l) => `-D ${l.slice(3)}`),
          ...ours.map((c) => `-F ${c}`),
          ...ours.map((c) => `-X ${c}`),
          "COMMIT",
          "",
        ].join("\n");
        run(`${fam}-restore`, ["--noflush", "-w", "5"], script);
      }
    }
  });
  // 5. ipsets (once no rule uses them; list:set ones first, so try twice).
  step("ipsets", () => {
    const before = new Set(rec.ipsets);
    for (let pass = 0; pass < 3; pass++) {
      const ours = ipsets().filter((s) => OUR_IPSET.test(s) && !before.has(s));
      if (ours.length === 0) break;
      for (const s of ours) tryRun("ipset", ["destroy", s]);
    }
  });
  // 6. nftables: kube-proxy's tables, and tables iptables-nft made that are now empty.
  step("nftables", () => {
    const before = new Set(rec.nftTables);
    for (const t of nftTables()) {
      if (before.has(t)) continue;
      const [family, name] = t.split(" ");
      if (name === "kube-proxy") {
        run("nft", ["delete", "table", family!, name]);
        continue;
      }
      const listed = JSON.parse(tryRun("nft", ["-j", "list", "table", family!, name!]) ?? "{}") as {
        nftables?: Record<string, { hook?: string; policy?: string }>[];
      };
      const items = listed.nftables ?? [];
      const rules = items.filter((i) => "rule" in i).length;
      const chains = items.flatMap((i) => ("chain" in i ? [i.chain!] : []));
      const plain = chains.every((c) => c.hook !== undefined && c.policy === "accept");
      const others = items.filter((i) => "set" in i || "map" in i || "flowtable" in i).length;
      if (rules === 0 && plain && others === 0) run("nft", ["delete", "table", family!, name!]);
    }
  });
  // 7. Connections tracked for the pod and Service networks (best effort; they would expire).
  step("conntrack", () => {
    for (const cidr of [NET.clusterCIDR, NET.serviceCIDR]) {
      tryRun("conntrack", ["-D", "-s", cidr]);
      tryRun("conntrack", ["-D", "-d", cidr]);
    }
  });
  // 8. Sysctls: the global forwarding switch resets every interface's, so it goes first.
  step("sysctls", () => {
    const keys = Object.keys(rec.sysctls).sort((a, b) => rank(a) - rank(b));
    for (const k of keys) {
      const want = rec.sysctls[k]!;
      const now = readSysctl(k);
      if (now === undefined || now === want) continue;
      writeFileSync(sysctlPath(k), want);
    }
  });
  // 9. The kubelet's cgroups, deepest first (empty once their processes are gone).
  step("cgroups", () => {
    const before = new Set(rec.cgroups);
    for (const top of kubeCgroups().filter((c) => !before.has(c))) {
      const dirs: string[] = [];
      const walk = (d: string) => {
        dirs.push(d);
        for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
      };
      walk(top);
      for (const d of dirs.sort((a, b) => b.length - a.length)) {
        for (let i = 0; i < 50; i++) {
          try {
            rmdirSync(d);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "ENOENT") break;
            sleepSync(100);
          }
        }
      }
    }
  });
  // 10. Files the node made outside its folders, and containerd's and runc's state.
  step("files", () => {
    rmSync(CONTAINERD_STATE, { recursive: true, force: true });
    rmSync(RUNC_ROOT, { recursive: true, force: true });
    for (const [p, existed] of Object.entries(rec.existed))
      if (!existed) rmSync(p, { recursive: true, force: true });
  });
}

function releaseLock(): void {
  try {
    if (readFileSync(LOCK, "utf8").trim() === String(process.pid)) unlinkSync(LOCK);
  } catch {}
  try {
    rmdirSync(RUN_DIR);
  } catch {}
}

function rank(key: string): number {
  if (key === "net.ipv4.ip_forward") return 0;
  if (/\.(all|default)\.forwarding$/.test(key)) return 1;
  return 2;
}

// ---- certificates and kubeconfigs -----------------------------------------------------------------

/** Runs the openssl CLI in `cwd` (quietly: its errors only, in the thrown error). */
export function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** `<name>.key` and `<name>.crt` signed by the cluster CA in `pki` (ca.crt, ca.key), with the
 * extensions in the file `extfile` (in `pki`) if given. Also the API server's own certificates. */
export function issueCert(pki: string, name: string, subject: string, extfile?: string): void {
  openssl(
    [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      subject,
    ],
    pki,
  );
  openssl(
    [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "7",
      ...(extfile ? ["-extfile", extfile] : []),
    ],
    pki,
  );
}

/** Writes a kubeconfig at `path` for the client certificate `<pki>/<name>.crt` (and `.key`); returns `path`. */
export function writeKubeconfig(path: string, server: string, pki: string, name: string): string {
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: ${server}
    certificate-authority: ${join(pki, "ca.crt")}
users:
- name: ${name}
  user:
    client-certificate: ${join(pki, `${name}.crt`)}
    client-key: ${join(pki, `${name}.key`)}
contexts:
- name: local
  context: {cluster: local, user: ${name}}
current-context: local
`,
  );
  return path;
}

// ---- the node ---------------------------------------------------------------------------------------

export interface JoinOptions {
  /** The API server's URL (on NET.nodeIP) and the folder with its CA and admin certificate. */
  server: string;
  pki: string;
  adminKubeconfig: string;
}

export class LocalNode {
  readonly nodeName: string;
  /** With claim's checkHost: the host right after claiming it, and right after stop's cleanup. */
  hostBefore?: Record<string, string>;
  hostAfter?: Record<string, string>;
  private procs: Proc[] = [];
  private stopped = false;
  private readonly dir: string;
  private readonly containerdRoot: string;
  private readonly rec: HostRecord;
  private readonly log: (m: string) => void;
  private readonly exitHook = () => this.cleanupNow();

  private constructor(rec: HostRecord, log: (m: string) => void, nodeName: string) {
    this.rec = rec;
    this.log = log;
    this.nodeName = nodeName;
    this.dir = join(rec.stateDir, "node");
    this.containerdRoot = rec.containerdRoot;
  }

  /**
   * Takes the host (waiting for another local node to stop), records its state, and creates the
   * pod network's bridge with the node's address, so the API server can bind there before it starts.
   */
  static async claim(
    stateDir: string,
    opts: {
      nodeName?: string;
      log?: (m: string) => void;
      /** Take hostSnapshot() once the host is ours and again before giving it back (tests). */
      checkHost?: boolean;
    } = {},
  ): Promise<LocalNode> {
    const log = opts.log ?? (() => {});
    if (process.getuid?.() !== 0)
      throw new Error("the local node needs root (it runs a kubelet and containerd)");
    for (const tool of ["ip", "iptables-save", "nft", "ipset", "conntrack", "runc", "umount"]) {
      if (tryRun("sh", ["-c", `command -v ${tool}`]) === undefined)
        throw new Error(`'${tool}' is not installed: run hack/ensure-deps.sh`);
    }
    if (!existsSync("/usr/lib/cni/bridge"))
      throw new Error(
        "the CNI plugins are not installed (apt-get install containernetworking-plugins; hack/ensure-deps.sh)",
      );
    await takeLock(log);
    const hostBefore = opts.checkHost ? hostSnapshot() : undefined;
    const containerdRoot = join(binDir(), "..", "containerd");
    const rec = record(stateDir, containerdRoot);
    saveRecord(rec);
    const node = new LocalNode(rec, log, opts.nodeName ?? "hybridp2p-local");
    node.hostBefore = hostBefore;
    process.on("exit", node.exitHook);
    try {
      // The CNI bridge plugin finds it, with its gateway address, and adds pods to it.
      run("ip", ["link", "add", NET.bridge, "type", "bridge"]);
      run("ip", ["addr", "add", `${NET.nodeIP}/${NET.nodePodCIDR.split("/")[1]}`, "dev", NET.bridge]);
      run("ip", ["link", "set", NET.bridge, "up"]);
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  private track(p: Proc): Proc {
    this.procs.push(p);
    this.record(p, false);
    return p;
  }

  private record(p: Proc, adopted: boolean): void {
    const pid = p.child.pid;
    if (pid === undefined) return;
    this.rec.procs.push({ name: p.name, pid, exe: exeOf(pid) ?? "", ...(adopted ? { adopted } : {}) });
    saveRecord(this.rec);
  }

  /** Records the cluster's other processes (etcd, the API server bound to the node's address,
   * the controllers), so that cleaning up after a crash stops them too. Their owner stops them. */
  adopt(procs: Proc[]): void {
    for (const p of procs) this.record(p, true);
  }

  private file(path: string, content: string): string {
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, content);
    return path;
  }

  /** containerd, then the images: the node's own (pause, CoreDNS, ...) and `images` from podman. */
  async startRuntime(images: string[] = []): Promise<void> {
    const dir = this.dir;
    mkdirSync(join(dir, "logs"), { recursive: true });
    mkdirSync(this.containerdRoot, { recursive: true });
    const cni = join(dir, "cni");
    this.file(
      join(cni, "net.d", "10-hybridp2p.conflist"),
      JSON.stringify(
        {
          cniVersion: "1.0.0",
          name: "hybridp2p",
          plugins: [
            {
              type: "bridge",
              bridge: NET.bridge,
              isGateway: true,
              ipMasq: false,
              hairpinMode: true,
              ipam: {
                type: "host-local",
                ranges: [[{ subnet: NET.nodePodCIDR }]],
                routes: [{ dst: "0.0.0.0/0" }],
                dataDir: join(cni, "ipam"),
              },
            },
            { type: "portmap", capabilities: { portMappings: true } },
          ],
        },
        null,
        1,
      ),
    );
    const pause = archiveRef("pause-image");
    const config = this.file(
      join(dir, "containerd.toml"),
      `version = 3
root = ${toml(this.containerdRoot)}
state = ${toml(CONTAINERD_STATE)}
imports = []
disabled_plugins = ["io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs", "io.containerd.nri.v1.nri"]

[grpc]
  address = ${toml(CONTAINERD_SOCK)}

[ttrpc]
  address = ${toml(`${CONTAINERD_SOCK}.ttrpc`)}

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = ${toml(pause)}

  [plugins.'io.containerd.cri.v1.runtime']
    # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj to what containerd asks
    # for sandboxes (notes/real-node.md).
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_criu = false
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = ${toml(which("runc"))}
          Root = ${toml(RUNC_ROOT)}
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = ${toml(join(cni, "net.d"))}
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

  [plugins.'io.containerd.internal.v1.opt']
    path = ${toml(join(this.containerdRoot, "opt"))}

  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = ${toml(join(this.containerdRoot, "image-verifier"))}
`,
    );
    const containerd = this.track(
      startProcess(
        "containerd",
        nodeBin("containerd"),
        ["--config", config],
        join(dir, "logs", "containerd.log"),
        {
          // Its own runc shim first on PATH (Debian's containerd may have installed an older one).
          env: { ...process.env, PATH },
          stopGraceMs: 10_000,
        },
      ),
    );
    await waitUntil(
      containerd,
      "its socket",
      async () => tryRun(nodeBin("ctr"), ["-a", CONTAINERD_SOCK, "version"]) !== undefined,
      60_000,
    );
    // A node that did not stop may have left pods in the persistent store: none survive.
    this.removePods();
    const t0 = Date.now();
    await this.importImages([...ADDON_IMAGES.map((a) => `archive:${a}`), ...images]);
    this.log(`images in containerd in ${Date.now() - t0} ms`);
  }

  private ctr(args: string[]): string {
    return run(nodeBin("ctr"), ["-a", CONTAINERD_SOCK, "-n", "k8s.io", ...args]);
  }

  private crictl(args: string[]): string | undefined {
    return tryRun(nodeBin("crictl"), [
      "--runtime-endpoint",
      `unix://${CONTAINERD_SOCK}`,
      "--timeout",
      "30s",
      ...args,
    ]);
  }

  /** Every pod sandbox stopped and removed through the CRI, so the CNI plugins tear their networks down. */
  private removePods(): void {
    if (!existsSync(CONTAINERD_SOCK)) return;
    this.crictl(["rmp", "--all", "--force"]);
  }

  /**
   * Imports images into containerd's k8s.io namespace (the kubelet's): `archive:NAME` is a
   * docker-archive from hack/build-binaries.sh, anything else an image in podman's store
   * (`podman save --format docker-archive`). An image whose source has not changed since it was
   * last imported is skipped; the content store outlives the node, in the cache folder.
   */
  async importImages(images: string[]): Promise<void> {
    const stampFile = join(this.containerdRoot, "hybridp2p-imports.json");
    const stamps = (() => {
      try {
        return JSON.parse(readFileSync(stampFile, "utf8")) as Record<string, string>;
      } catch {
        return {} as Record<string, string>;
      }
    })();
    const present = new Set(this.ctr(["images", "list", "-q"]).split("\n").filter(Boolean));
    const tmp = join(this.dir, "import");
    mkdirSync(tmp, { recursive: true });
    for (const image of images) {
      let ref: string;
      let source: string;
      let tar: string;
      if (image.startsWith("archive:")) {
        const name = image.slice("archive:".length);
        tar = join(binDir(), `${name}.tar`);
        if (!existsSync(tar))
          throw new Error(`${tar} is missing. Run: bash ${join(repoRoot, "hack/build-binaries.sh")} node`);
        ref = archiveRef(name);
        const st = statSync(tar);
        source = `${readlinkSync(tar)}:${st.size}:${st.mtimeMs}`;
      } else {
        ref = image;
        source = run("podman", ["image", "inspect", "--format", "{{.Id}}", image]).trim();
        tar = "";
      }
      if (stamps[ref] === source && present.has(ref)) continue;
      if (!tar) {
        tar = join(tmp, "image.tar");
        rmSync(tar, { force: true });
        await runAsync("podman", ["save", "--format", "docker-archive", "-o", tar, image], {
          maxBuffer: 1 << 24,
        });
      }
      await runAsync(nodeBin("ctr"), ["-a", CONTAINERD_SOCK, "-n", "k8s.io", "images", "import", tar], {
        maxBuffer: 1 << 24,
      });
      if (!image.startsWith("archive:")) rmSync(tar, { force: true });
      stamps[ref] = source;
      writeFileSync(stampFile, JSON.stringify(stamps, null, 1));
      this.log(`imported ${ref}`);
    }
    rmSync(tmp, { recursive: true, force: true });
  }

  /** The kubelet, kube-proxy, the add-ons and kube-router; resolves once the Node is Ready and
   * cluster DNS and the StorageClass's provisioner serve. */
  async join(o: JoinOptions): Promise<void> {
    const dir = this.dir;
    const { pki, server } = o;
    issueCert(pki, "kubelet", `/O=system:nodes/CN=system:node:${this.nodeName}`);
    issueCert(pki, "kube-proxy", "/CN=system:kube-proxy");
    issueCert(pki, "kube-router", "/CN=system:kube-router");
    const kubeletRoot = join(dir, "kubelet");
    mkdirSync(kubeletRoot, { recursive: true });
    const kubeletConfig = this.file(
      join(dir, "kubelet.yaml"),
      `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine: cgroup v1 (hybrid), no systemd, swap allowed (notes/real-node.md).
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
address: ${NET.nodeIP}
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${join(pki, "ca.crt")}}
authorization:
  mode: Webhook
clusterDomain: ${NET.clusterDomain}
clusterDNS: [${NET.dnsIP}]
podLogsDir: ${join(dir, "pod-logs")}
# A shared build machine: evict only when the disk is really full.
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
serializeImagePulls: false
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
`,
    );
    const kubelet = this.track(
      startProcess(
        "kubelet",
        nodeBin("kubelet"),
        [
          `--config=${kubeletConfig}`,
          `--kubeconfig=${writeKubeconfig(join(dir, "kubelet.kubeconfig"), server, pki, "kubelet")}`,
          `--root-dir=${kubeletRoot}`,
          `--cert-dir=${join(dir, "kubelet-pki")}`,
          `--hostname-override=${this.nodeName}`,
          `--node-ip=${NET.nodeIP}`,
          "--v=1",
        ],
        join(dir, "logs", "kubelet.log"),
        { env: { ...process.env, PATH }, stopGraceMs: 10_000 },
      ),
    );
    const proxyConfig = this.file(
      join(dir, "kube-proxy.yaml"),
      `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${writeKubeconfig(join(dir, "kube-proxy.kubeconfig"), server, pki, "kube-proxy")}
mode: nftables
hostnameOverride: ${this.nodeName}
clusterCIDR: ${NET.clusterCIDR}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Zero leaves the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`,
    );
    const proxy = this.track(
      startProcess(
        "kube-proxy",
        nodeBin("kube-proxy"),
        [`--config=${proxyConfig}`, "--v=1"],
        join(dir, "logs", "kube-proxy.log"),
        {
          env: { ...process.env, PATH },
        },
      ),
    );
    const kubectl = (args: string[]) =>
      runAsync(nodeBin("kubectl"), ["--kubeconfig", o.adminKubeconfig, ...args], { maxBuffer: 1 << 24 }).then(
        (r) => r.stdout,
      );
    const addons = readFileSync(new URL("./node-addons.yaml", import.meta.url), "utf8");
    const vars: Record<string, string> = {
      CLUSTER_DOMAIN: NET.clusterDomain,
      DNS_IP: NET.dnsIP,
      COREDNS_IMAGE: archiveRef("coredns-image"),
      LOCAL_PATH_IMAGE: archiveRef("local-path-provisioner-image"),
      BUSYBOX_IMAGE: archiveRef("busybox-image"),
      LOCAL_PATH_DIR: join(dir, "volumes"),
    };
    const manifest = addons.replace(/\$\{([A-Z_]+)\}/g, (_, k: string) => {
      if (vars[k] === undefined) throw new Error(`node-addons.yaml: no value for \${${k}}`);
      return vars[k];
    });
    const addonsFile = this.file(join(dir, "addons.yaml"), manifest);
    await kubectl(["apply", "--server-side", "-f", addonsFile]);
    const admin = { pki, server };
    await waitUntil(
      kubelet,
      `Node ${this.nodeName} registered`,
      () => nodeCondition(admin, this.nodeName, undefined),
      120_000,
    );
    // kube-router exits when its Node does not exist yet.
    const healthPort = 20244;
    this.track(
      startProcess(
        "kube-router",
        nodeBin("kube-router"),
        [
          `--kubeconfig=${writeKubeconfig(join(dir, "kube-router.kubeconfig"), server, pki, "kube-router")}`,
          `--hostname-override=${this.nodeName}`,
          "--run-firewall=true",
          "--run-router=false",
          "--run-service-proxy=false",
          "--enable-cni=false",
          "--enable-ipv6=false",
          `--service-cluster-ip-range=${NET.serviceCIDR}`,
          `--health-port=${healthPort}`,
          "--metrics-port=0",
          "--v=1",
        ],
        join(dir, "logs", "kube-router.log"),
        { env: { ...process.env, PATH } },
      ),
    );
    await Promise.all([
      waitUntil(
        kubelet,
        `Node ${this.nodeName} Ready`,
        () => nodeCondition(admin, this.nodeName, "Ready"),
        120_000,
      ),
      waitUntil(
        proxy,
        "its /healthz",
        async () => (await fetch("http://127.0.0.1:10256/healthz")).ok,
        120_000,
      ),
    ]);
    await Promise.all(
      [
        ["kube-system", "coredns"],
        ["local-path-storage", "local-path-provisioner"],
      ].map(([ns, name]) =>
        waitUntil(
          kubelet,
          `the ${name} Deployment available`,
          async () => {
            const out = await kubectl([
              "get",
              "deployment",
              name!,
              "-n",
              ns!,
              "-o",
              "jsonpath={.status.availableReplicas}",
            ]);
            return out.trim() === "1";
          },
          180_000,
        ),
      ),
    );
  }

  /** Every process and the node's pods stopped, the host as it was before claim(); the lock released. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    // The kubelet first (it would restart pods), kube-router and kube-proxy, then the pods through
    // the CRI while containerd still runs, then containerd.
    const byName = (n: string) => this.procs.filter((p) => p.name === n);
    for (const n of ["kube-router", "kubelet", "kube-proxy"]) for (const p of byName(n)) await p.stop();
    try {
      this.removePods();
    } catch {}
    for (const p of byName("containerd")) await p.stop();
    this.cleanupNow();
  }

  private cleanupNow(): void {
    if (this.stopped) return;
    this.stopped = true;
    process.off("exit", this.exitHook);
    cleanupHost(this.rec, this.log, false);
    rmSync(RECORD, { force: true });
    // Still ours: no other node can have changed the host in between.
    if (this.hostBefore) this.hostAfter = hostSnapshot();
    releaseLock();
  }
}

function toml(s: string): string {
  return JSON.stringify(s);
}

function which(cmd: string): string {
  return run("sh", ["-c", `command -v ${cmd}`]).trim();
}

/** The image name inside one of hack/build-binaries.sh's docker-archive tars. */
function archiveRef(name: string): string {
  const tar = join(binDir(), `${name}.tar`);
  const manifest = JSON.parse(run("tar", ["-xOf", tar, "manifest.json"])) as { RepoTags: string[] }[];
  return manifest[0]!.RepoTags[0]!;
}

/** With `type`, whether the Node has that condition True; without, whether the Node exists. */
function nodeCondition(
  admin: { pki: string; server: string },
  node: string,
  type: string | undefined,
): Promise<boolean> {
  return new Promise((resolve) => {
    const url = new URL(`/api/v1/nodes/${node}`, admin.server);
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        ca: readFileSync(join(admin.pki, "ca.crt")),
        cert: readFileSync(join(admin.pki, "admin.crt")),
        key: readFileSync(join(admin.pki, "admin.key")),
        timeout: 2000,
      },
      (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c.toString();
        });
        res.on("end", () => {
          if (res.statusCode !== 200) return resolve(false);
          if (type === undefined) return resolve(true);
          try {
            const conds = (JSON.parse(body).status?.conditions ?? []) as { type: string; status: string }[];
            resolve(conds.some((c) => c.type === type && c.status === "True"));
          } catch {
            resolve(false);
          }
        });
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

// `node testkit/local/node.ts cleanup`: undo what a local node that was killed left on the host.
if (import.meta.main && process.argv[2] === "cleanup") {
  const locked = existsSync(LOCK);
  const holder = locked ? Number(readFileSync(LOCK, "utf8").trim() || "0") : 0;
  if (locked && (holder === 0 || alive(holder))) {
    console.error(
      holder ? `the local node of process ${holder} is running; stop it instead` : "a local node is starting",
    );
    process.exit(1);
  }
  const rec = loadRecord();
  if (!rec && !locked) console.log("no local node left anything on this host; nothing to do");
  else {
    if (rec) cleanupHost(rec, console.log);
    rmSync(RECORD, { force: true });
    rmSync(LOCK, { force: true });
    releaseLock();
    console.log("cleaned up");
  }
}
