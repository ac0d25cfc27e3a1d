// Where the node agent runs a pod: a podman pod (an infra container holding the network
// namespace, so the pod's containers share localhost and one IP, as in Kubernetes), or, where
// podman is missing, local processes on 127.0.0.1 (the image's command resolved to this
// checkout and run with this Node).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { containerArgv, type ImageConfig } from "./pod.ts";

const run = promisify(execFile);

export interface Launch {
  name: string;
  image: string;
  /** Command and args from the pod spec, $(VAR) expanded (undefined: the image's). */
  command?: string[];
  args?: string[];
  env: Record<string, string>;
  workingDir?: string;
  /** uid[:gid] from the security context (podman only; processes run as the agent's user). */
  user?: string;
  /** host path -> container path (read-only when ro). */
  mounts: { hostPath: string; containerPath: string; readOnly: boolean }[];
  logFile: string;
}

export interface Container {
  id: string;
  /** Resolves with the exit code when the container stops. */
  exited: Promise<number>;
  stop(graceMs: number): Promise<void>;
  /** Runs a command in the container (exec probes); resolves with its exit code. */
  exec(argv: string[], timeoutMs: number): Promise<number>;
}

export interface Sandbox {
  ip: string;
  start(l: Launch): Promise<Container>;
  remove(): Promise<void>;
}

export interface Runtime {
  name: "podman" | "process";
  version: string;
  sandbox(
    key: string,
    hostname: string,
    hosts: Record<string, string>,
    dns?: { server: string; search: string[] },
  ): Promise<Sandbox>;
  /** Removes whatever a previous agent of this node left behind. */
  cleanup(): Promise<void>;
}

// ---- podman --------------------------------------------------------------------------------

export class PodmanRuntime implements Runtime {
  readonly name = "podman";
  version = "";
  private readonly env: NodeJS.ProcessEnv;
  private readonly label: string;

  constructor(stateDir: string, node: string) {
    // runc with cgroupfs and explicit ulimits (shared/notes/containers.md), for the infra
    // container too, which takes no flags: hence a containers.conf rather than flags.
    const conf = join(stateDir, "containers.conf");
    writeFileSync(
      conf,
      `[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n`,
    );
    this.env = { ...process.env, CONTAINERS_CONF: conf };
    this.label = `hybridp2p.node=${node}`;
    this.network = `hp-${node}`;
  }

  /** This node's own bridge network: nodes (and clusters) on one host do not share a gateway,
   * so each agent serves its API forwarder and DNS on its own address. */
  readonly network: string;
  gateway = "";

  static available(): boolean {
    return ["/usr/bin/podman", "/usr/local/bin/podman"].some((p) => existsSync(p));
  }

  async podman(args: string[]): Promise<string> {
    const { stdout } = await run("podman", args, { env: this.env, maxBuffer: 16 << 20 });
    return stdout.trim();
  }

  async init(): Promise<this> {
    this.version = await this.podman(["version", "--format", "{{.Client.Version}}"]);
    // --disable-dns: the agent answers DNS itself (aardvark-dns would take the gateway's port 53).
    await this.podman(["network", "exists", this.network]).catch(() =>
      this.podman(["network", "create", "--disable-dns", "--label", this.label, this.network]),
    );
    this.gateway = await this.podman([
      "network",
      "inspect",
      this.network,
      "--format",
      "{{range .Subnets}}{{.Gateway}}{{end}}",
    ]);
    return this;
  }

  async cleanup(): Promise<void> {
    const pods = await this.podman(["pod", "ls", "-q", "--filter", `label=${this.label}`]);
    for (const id of pods.split("\n").filter(Boolean))
      await this.podman(["pod", "rm", "-f", id]).catch(() => {});
  }

  async sandbox(
    key: string,
    hostname: string,
    hosts: Record<string, string>,
    dns?: { server: string; search: string[] },
  ): Promise<Sandbox> {
    const name = `hp_${key}`;
    await this.podman(["pod", "rm", "-f", name]).catch(() => {});
    const add = Object.entries(hosts).flatMap(([h, ip]) => ["--add-host", `${h}:${ip}`]);
    // ndots:5 as in Kubernetes, so "svc.ns.svc" tries the search domains first.
    const resolver = dns
      ? ["--dns", dns.server, ...dns.search.flatMap((d) => ["--dns-search", d]), "--dns-option", "ndots:5"]
      : [];
    await this.podman([
      "pod",
      "create",
      "--name",
      name,
      "--label",
      this.label,
      "--network",
      this.network,
      "--hostname",
      hostname,
      ...add,
      ...resolver,
    ]);
    await this.podman(["pod", "start", name]);
    const infra = await this.podman(["pod", "inspect", name, "--format", "{{.InfraContainerID}}"]);
    const ip = await this.podman([
      "inspect",
      infra,
      "--format",
      "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    ]);
    return {
      ip,
      start: (l) => this.startContainer(name, l),
      remove: async () => {
        await this.podman(["pod", "rm", "-f", "-t", "0", name]).catch(() => {});
      },
    };
  }

  private async startContainer(pod: string, l: Launch): Promise<Container> {
    const args = ["run", "-d", "--pod", pod, "--name", `${pod}_${l.name}`, "--pull=never"];
    args.push("--log-driver", "k8s-file", "--log-opt", `path=${l.logFile}`);
    for (const [k, v] of Object.entries(l.env)) args.push("-e", `${k}=${v}`);
    for (const m of l.mounts) args.push("-v", `${m.hostPath}:${m.containerPath}${m.readOnly ? ":ro" : ""}`);
    if (l.workingDir) args.push("--workdir", l.workingDir);
    if (l.user) args.push("--user", l.user);
    if (l.command) args.push("--entrypoint", JSON.stringify(l.command));
    args.push(l.image, ...(l.args ?? []));
    await this.podman(["rm", "-f", `${pod}_${l.name}`]).catch(() => {});
    const id = await this.podman(args);
    // `podman wait` prints the exit code once the container stops.
    const exited = this.podman(["wait", id]).then(
      (out) => Number(out.split("\n").pop()),
      () => 137,
    );
    return {
      id: `podman://${id}`,
      exited,
      stop: async (graceMs) => {
        await this.podman(["stop", "-t", String(Math.ceil(graceMs / 1000)), id]).catch(() => {});
        await exited;
      },
      exec: (argv, timeoutMs) =>
        run("podman", ["exec", id, ...argv], { env: this.env, timeout: timeoutMs }).then(
          () => 0,
          (e: { code?: number }) => (typeof e.code === "number" ? e.code : 1),
        ),
    };
  }
}

// ---- local processes ------------------------------------------------------------------------

/** The images this repository builds, as their Containerfiles start them (WORKDIR /app is the checkout). */
export function localImage(image: string, repoRoot: string): ImageConfig | undefined {
  const path = image.split("@")[0]!.split(":")[0]!;
  if (/\/(workload|workloads)$/.test(path))
    return { entrypoint: ["node", "workloads/main.ts"], cmd: ["--help"], workingDir: repoRoot };
  if (/\/operator$/.test(path))
    return { entrypoint: ["node", "operator/main.ts"], cmd: ["run"], workingDir: repoRoot };
  if (/\/node-base$/.test(path)) return { entrypoint: [], cmd: ["node"], workingDir: repoRoot };
  return undefined;
}

export class ProcessRuntime implements Runtime {
  readonly name = "process";
  readonly version = process.version;
  private readonly repoRoot: string;

  constructor(repoRoot: string) {
    this.repoRoot = repoRoot;
  }

  async cleanup(): Promise<void> {}

  async sandbox(): Promise<Sandbox> {
    return {
      ip: "127.0.0.1",
      start: async (l) => this.start(l),
      remove: async () => {},
    };
  }

  private start(l: Launch): Container {
    const image = localImage(l.image, this.repoRoot);
    if (!image) throw new Error(`image ${l.image} cannot run as a local process (no container engine here)`);
    const argv = containerArgv({ name: l.name, command: l.command, args: l.args }, image, {});
    if (argv.length === 0) throw new Error(`container ${l.name} has no command`);
    // `node` in an image is Node 24: the one running this agent.
    const bin = argv[0] === "node" ? process.execPath : argv[0]!;
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", ...l.env };
    const fd = openSync(l.logFile, "a");
    const child: ChildProcess = spawn(bin, argv.slice(1), {
      cwd: l.workingDir ?? image.workingDir,
      env,
      stdio: ["ignore", fd, fd],
      detached: true,
    });
    closeSync(fd);
    const exited = new Promise<number>((resolve) => {
      child.once("exit", (code, signal) => resolve(code ?? (signal === "SIGKILL" ? 137 : 143)));
      child.once("error", () => resolve(127));
    });
    // Nothing outlives the agent.
    const kill = () => signalGroup(child, "SIGKILL");
    process.once("exit", kill);
    exited.then(() => process.off("exit", kill));
    return {
      id: `process://${child.pid}`,
      exited,
      stop: async (graceMs) => {
        if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
        signalGroup(child, "SIGTERM");
        const timer = setTimeout(() => signalGroup(child, "SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      },
      exec: (probe, timeoutMs) =>
        run(probe[0]!, probe.slice(1), {
          env,
          cwd: l.workingDir ?? image.workingDir,
          timeout: timeoutMs,
        }).then(
          () => 0,
          (e: { code?: number }) => (typeof e.code === "number" ? e.code : 1),
        ),
    };
  }
}

/** Signals the container's whole process group (it was started detached, as its own group). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}
