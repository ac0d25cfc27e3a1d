// The local region, in the foreground: `node hack/local/cli.ts up` starts the control plane
// and data services, installs the CRDs, applies the examples, prints how to reach them and
// keeps running until Ctrl-C, when it stops everything it started.
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command } from "commander";
import {
  binDir,
  buildImages,
  envVars,
  type Running,
  startLocalEnv,
  storeCredentialEnv,
} from "../../testkit/local/services.ts";
import { freePort, startProcess, waitUntil } from "../../testkit/processes.ts";

const repoRoot = new URL("../..", import.meta.url).pathname;
const localDir = join(repoRoot, ".cache/local");
const node = process.execPath; // Node 24: this script runs under it

/** The operator as its own process, as in a cluster: leader election on, the flag plane on. */
async function startOperator(
  kubeconfig: string,
  etcdEndpoints: string,
  natsUrl: string,
  stateDir: string,
  storeEnv: Record<string, string>,
) {
  const [metrics, health] = [await freePort(), await freePort()];
  const proc = startProcess(
    "hybrid-operator",
    node,
    [
      join(repoRoot, "operator/main.ts"),
      "run",
      "--kubeconfig",
      kubeconfig,
      "--leader-elect",
      "--leader-election-namespace",
      "default",
      // No pods here: every Region's flags go to the local flag etcd, acks come on the local NATS
      // (the Regions' managed stores would be in-cluster addresses this host cannot reach).
      "--flags-etcd-endpoints",
      etcdEndpoints,
      "--flags-nats-url",
      natsUrl,
      "--metrics-bind-address",
      `127.0.0.1:${metrics}`,
      "--health-probe-bind-address",
      `127.0.0.1:${health}`,
    ],
    join(stateDir, "logs", "operator.log"),
    // The local stores run with auth and TLS: the operator's credentials, as a pod's.
    { env: { ...process.env, ...storeEnv } },
  );
  await waitUntil(proc, "/readyz", async () => (await fetch(`http://127.0.0.1:${health}/readyz`)).ok);
  return { proc, metrics: `http://127.0.0.1:${metrics}/metrics` };
}

/**
 * How to play on the local cluster: bots that sign up and log in like players, through the
 * gateway's NodePort and the other components' ClusterIPs (kube-proxy on the local node routes both).
 * The Region serves wss and https from its <region>-serving-tls Secret: its ca.crt is written to
 * `caFile` for the bots' --ca-file; the certificate names the Services, not these addresses, so
 * the bots check it for the gateway Service's name (--tls-server-name) and Chromium is told to
 * accept that one certificate's key.
 */
function playHint(kc: string, nodeName: string, caFile: string): string {
  try {
    const get = (path: string, jsonpath: string) =>
      kubectl(kc, ["get", ...path.split(" "), "-o", `jsonpath=${jsonpath}`]);
    const nodeIP = get(`node ${nodeName}`, '{.status.addresses[?(@.type=="InternalIP")].address}');
    const nodePort = get("svc demo-gateway -n demo", "{.spec.ports[0].nodePort}");
    const ip = (component: string) => get(`svc demo-${component} -n demo`, "{.spec.clusterIP}");
    const secret = (key: string) =>
      Buffer.from(
        get("secret demo-serving-tls -n demo", `{.data.${key.replace(".", "\\.")}}`),
        "base64",
      ).toString();
    const tls = servingTls(secret, caFile);
    const [ws, http] = tls ? ["wss", "https"] : ["ws", "http"];
    const login = `${http}://${ip("login-server")}:6900`;
    const char = `${http}://${ip("char-server")}:6121`;
    const coordinator = `${ws}://${ip("coordinator")}:7100`;
    const trust = tls
      ? ` \\
    --ca-file ${caFile} --tls-server-name demo-gateway.demo.svc`
      : "";
    const page = `${http}://${nodeIP}:${nodePort}/play/?login=${encodeURIComponent(login)}&char=${encodeURIComponent(char)}&coordinator=${encodeURIComponent(coordinator)}`;
    const browse = tls
      ? `# (the certificate names the Services, not these addresses: Chromium accepts its key with
  #  chromium --user-data-dir=$(mktemp -d) --ignore-certificate-errors-spki-list=${tls.spki} '${page}'
  #  ; another browser warns once per address)
  ${page}`
      : page;
    return `  # play: bots sign up and log in like players; new characters start on prt_fild08, a P2P zone
  # (the Region's startPoint): half of them mesh (P2P), and the Zone's PEERS column counts them
  npm run hybridctl -- bots --count 20 --zone prt-fild08 -n demo --gateway ${ws}://${nodeIP}:${nodePort} \\
    --login ${login} --char ${char} --p2p-share 0.5 --coordinator ${coordinator}${trust}
  ${join(binDir(), "kubectl")} get zones -n demo -o wide     # PEERS, ELIGIBLE, PLAYING-P2P
  # play yourself in a browser (sign up, pick a character, walk with the arrow keys):
  ${browse}${roHint(get, nodeIP, login, trust)}`;
  } catch (err) {
    return `  (no play hint: ${(err as Error).message.split("\n")[0]})`;
  }
}

/**
 * The Region's serving certificate, from its Secret: ca.crt written to `caFile`, and the SPKI
 * hash of tls.crt (Chromium's allow list). Undefined when the Region serves plain ws/http.
 */
function servingTls(secret: (key: string) => string, caFile: string): { spki: string } | undefined {
  let ca: string;
  let cert: string;
  try {
    [ca, cert] = [secret("ca.crt"), secret("tls.crt")];
  } catch {
    return undefined; // no Secret: spec.tls.mode Disabled
  }
  writeFileSync(caFile, ca);
  const spki = new X509Certificate(cert).publicKey.export({ type: "spki", format: "der" });
  return { spki: createHash("sha256").update(spki).digest("base64") };
}

/**
 * How to point a legacy RO client (PACKETVER 20101124) at the region, when the Region turns its RO
 * endpoints on: the login Service's node port at the node's address (the servers name the char and
 * map ports themselves).
 */
function roHint(
  get: (path: string, jsonpath: string) => string,
  nodeIP: string,
  login: string,
  trust: string,
): string {
  let port: string;
  try {
    port = get("svc demo-ro-login -n demo", "{.spec.ports[0].nodePort}");
  } catch {
    return "";
  }
  return `
  # a Ragnarok Online client (PACKETVER 20101124): set its login server to ${nodeIP}:${port}
  # (plain TCP, passwords in clear: RO's own protocol has no TLS); or RO bots that sign up and play the same way:
  npm run hybridctl -- bots --protocol ro --count 10 --ro-login ${nodeIP}:${port} --login ${login}${trust}`;
}

function kubectl(kubeconfig: string, args: string[]): string {
  return execFileSync(join(binDir(), "kubectl"), ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8" });
}

/** Live status until Ctrl-C, with the commands to try under it. (`hybridctl status --watch`
 * does the same alone; here the hints must stay on screen, so the loop is ours.) */
async function statusLoop(env: NodeJS.ProcessEnv, hints: string): Promise<void> {
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = () => {
      stopping = true;
      resolve();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  while (!stopping) {
    let table: string;
    try {
      table = execFileSync(node, [join(repoRoot, "cli/hybridctl.ts"), "status", "-A"], {
        encoding: "utf8",
        env,
      });
    } catch (err) {
      table = `hybridctl status failed: ${(err as Error).message}`;
    }
    if (process.stdout.isTTY) process.stdout.write("\x1b[H\x1b[2J");
    console.log(`${new Date().toISOString()}\n\n${table}\n${hints}`);
    await Promise.race([stopped, new Promise((r) => setTimeout(r, 2000))]);
  }
}

/** What stops everything `up` started: `first` (the operator, when there is one), then the
 * services; then removes the state. */
function stopEverything(running: Running, log: (m: string) => void, first = async () => {}) {
  return async () => {
    log("stopping...");
    await first();
    await running.stop();
    rmSync(running.env.stateDir, { recursive: true, force: true });
    rmSync(localDir, { force: true });
    log("stopped; nothing left running");
  };
}

/** Runs `setUp` and prints the hints it returns; then stops at once with --exit, or shows the
 * status loop (in `statusEnv`) until Ctrl-C and stops. A failing set-up stops what had started. */
async function serve(
  exit: boolean,
  shutdown: () => Promise<void>,
  statusEnv: NodeJS.ProcessEnv,
  setUp: () => Promise<string>,
): Promise<void> {
  let hints: string;
  try {
    hints = await setUp();
    console.log(hints);
  } catch (err) {
    await shutdown();
    throw err;
  }
  if (!exit) await statusLoop(statusEnv, hints);
  await shutdown();
}

async function up(opts: { exit: boolean }): Promise<void> {
  const log = (m: string) => console.log(`[local] ${m}`);
  rmSync(localDir, { recursive: true, force: true });
  mkdirSync(join(repoRoot, ".cache"), { recursive: true });
  const running = await startLocalEnv({ log });
  let stopOperator = async () => {};
  const shutdown = stopEverything(running, log, () => stopOperator());
  await serve(opts.exit, shutdown, { ...process.env, ...envVars(running.env) }, async () => {
    // A stable path to the throwaway state, so other terminals can find it.
    symlinkSync(running.env.stateDir, localDir);
    const kc = running.env.kubeconfig!;
    log("installing CRDs");
    kubectl(kc, ["apply", "--server-side", "-f", join(repoRoot, "crds")]);
    kubectl(kc, ["wait", "--for=condition=Established", "--timeout=60s", "-f", join(repoRoot, "crds")]);
    log("starting the operator");
    const operator = await startOperator(
      kc,
      running.env.etcdEndpoints!,
      running.env.natsUrl!,
      running.env.stateDir,
      storeCredentialEnv(running.env),
    );
    stopOperator = () => operator.proc.stop();
    log("applying the example region");
    process.stdout.write(kubectl(kc, ["apply", "--server-side", "-f", join(repoRoot, "examples")]));
    // The region counts as up once the operator has acted on every example Zone: reconciled it
    // (observedGeneration) and published its flags (mode, written by the flag plane).
    await waitUntil(operator.proc, "the operator's first status on every Zone", async () => {
      const zones = JSON.parse(kubectl(kc, ["get", "zones", "-A", "-o", "json"])) as {
        items: {
          metadata: { generation: number };
          status?: { observedGeneration?: number; mode?: string };
        }[];
      };
      return (
        zones.items.length > 0 &&
        zones.items.every((z) => z.status?.observedGeneration === z.metadata.generation && z.status.mode)
      );
    });
    process.stdout.write(kubectl(kc, ["get", "hybridp2p", "-A"]));
    const vars = envVars(running.env);
    writeFileSync(
      join(localDir, "env.sh"),
      Object.entries(vars)
        .map(([k, v]) => `export ${k}=${v}\n`)
        .join(""),
    );
    return `
The local region is up. In another terminal:
  source ${join(localDir, "env.sh")}
  ${join(binDir(), "kubectl")} get hybridp2p -A
  npm run hybridctl -- status -A              # zones, modes, applied epochs
  npm run hybridctl -- p2p disable --zone prt-fild08 -n demo --force
  npm run hybridctl -- fallback force --zone prt-fild08 -n demo --reason "trying it out"
  npm run hybridctl -- flags watch            # what the workloads see in etcd
Operator log: ${join(running.env.stateDir, "logs", "operator.log")}
${Object.entries(vars)
  .map(([k, v]) => `  ${k}=${k.endsWith("_PASSWORD") ? "(in env.sh)" : v}`)
  .join("\n")}
Press Ctrl-C to stop everything.`;
  });
}

/** The full region as a cluster runs it: pods from the images, the operator from the chart,
 * the data stores as the operator's managed StatefulSets (the e2e suite's path, by hand). */
async function upCluster(opts: { exit: boolean }): Promise<void> {
  const log = (m: string) => console.log(`[local] ${m}`);
  const t0 = Date.now();
  log("hack/build-images.sh, hack/build-store-images.sh (cached layers make later runs quick)");
  const images = buildImages(["build-images.sh"], ["build-store-images.sh"]);
  log(`images built in ${Date.now() - t0} ms`);
  rmSync(localDir, { recursive: true, force: true });
  mkdirSync(join(repoRoot, ".cache"), { recursive: true });
  const running = await startLocalEnv({ services: ["kube", "cluster"], images, log });
  const shutdown = stopEverything(running, log);
  const kc = running.env.kubeconfig!;
  const env = { ...process.env, KUBECONFIG: kc };
  await serve(opts.exit, shutdown, env, async () => {
    symlinkSync(running.env.stateDir, localDir);
    log("installing the chart (operator, CRDs, RBAC)");
    // The operator publishes flags to the Region's managed etcd, the store its workloads read.
    execFileSync(
      join(binDir(), "helm"),
      [
        "install",
        "hybrid-p2p",
        join(repoRoot, "charts/hybrid-p2p"),
        "-n",
        "hybrid-system",
        "--create-namespace",
      ].concat([
        "--set",
        "flags.etcdEndpoints=http://demo-etcd.demo.svc:2379",
        "--wait",
        "--timeout",
        "300s",
      ]),
      { env, stdio: ["ignore", "inherit", "inherit"] },
    );
    kubectl(kc, ["create", "namespace", "demo"]);
    const keyset = execFileSync(node, [join(repoRoot, "workloads/main.ts"), "keyset", "new"], {
      encoding: "utf8",
    });
    kubectl(kc, [
      "create",
      "secret",
      "generic",
      "demo-auth-keyset",
      "-n",
      "demo",
      "--from-literal",
      `keyset.json=${keyset}`,
    ]);
    log("applying the example region");
    process.stdout.write(kubectl(kc, ["apply", "--server-side", "-f", join(repoRoot, "examples")]));
    log("waiting for the Zones to be Ready (pods start from the images)");
    kubectl(kc, ["wait", "--for=condition=Ready", "--timeout=300s", "zones", "--all", "-n", "demo"]);
    log(`the region is Ready, ${Math.round((Date.now() - t0) / 1000)} s after the start`);
    writeFileSync(join(localDir, "env.sh"), `export KUBECONFIG=${kc}\n`);
    return `
The local region runs as pods. In another terminal:
  source ${join(localDir, "env.sh")}
  ${join(binDir(), "kubectl")} get pods,hybridp2p -n demo
  npm run hybridctl -- status -A
  ${join(binDir(), "kubectl")} -n demo patch p2ppolicy fields-p2p --type merge -p '{"spec":{"enabled":false}}'
${playHint(kc, running.env.nodeName!, join(localDir, "demo-ca.crt"))}
Press Ctrl-C to stop everything.`;
  });
}

const program = new Command("local").description("the local control plane, data services and example region");
program
  .command("up")
  .description("start everything, apply the examples, and run until Ctrl-C")
  .option("--exit", "stop again as soon as everything is ready (a smoke check)", false)
  .option(
    "--cluster",
    "run the region as pods on a real local node: images, the chart, managed stores (needs root and podman)",
    false,
  )
  .action((opts: { exit: boolean; cluster: boolean }) => (opts.cluster ? upCluster(opts) : up(opts)));
await program.parseAsync();
