// Starts a real local control plane (etcd + kube-apiserver with throwaway certificates, RBAC
// and service-account keys) and the data services (a second etcd for flags, NATS with
// JetStream, Redis, PostgreSQL) on free loopback ports, envtest-style. The "cluster" service adds
// kube-controller-manager, kube-scheduler and a real node (node.ts), so pods run.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { type RequestOptions, request } from "node:https";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { type StoreAccess, storeAccessEnv } from "../../platform/stores/access.ts";
import {
  applyEtcdAuth,
  ETCD_ROOT_USER,
  etcdRoles,
  etcdUserName,
  natsPermissions,
  natsUserName,
  renderNatsConfig,
  type StoreRole,
} from "../../platform/stores/roles.ts";
import { sleep } from "../../platform/time.ts";
import { freePort, type Proc, startProcess, tcpOpen, waitUntil } from "../processes.ts";
import { binDir, issueCert, LocalNode, NET, openssl, writeKubeconfig } from "./node.ts";

export { binDir } from "./node.ts";

export type Service = "kube" | "flags-etcd" | "nats" | "redis" | "postgres" | "cluster";
export const ALL_SERVICES: Service[] = ["kube", "flags-etcd", "nats", "redis", "postgres"];

/** What tests, the operator and workloads read to reach the local environment. The stores run
 * with auth and TLS on; each access carries the test administrator's credentials and TLS
 * directory (platform/stores/access.ts). */
export interface LocalEnv {
  stateDir: string;
  kubeconfig?: string;
  kubeApiServer?: string;
  /** The stores' addresses (the same as in the accesses below). */
  etcdEndpoints?: string;
  natsUrl?: string;
  redisUrl?: string;
  databaseUrl?: string;
  /** The flag store (etcd): client certificate of etcd's root user. */
  etcd?: StoreAccess;
  /** NATS: an administrator user (every subject). */
  nats?: StoreAccess;
  /** Redis (Dragonfly's protocol): the password. */
  redis?: StoreAccess;
  /** PostgreSQL: the postgres user's password (scram-sha-256), over TLS. */
  postgres?: StoreAccess;
  /** Least-privilege accesses of LOCAL_REGIONS' roles, by `<role>@<region>` (see roleAccess). */
  roles?: Record<string, { etcd?: StoreAccess; nats?: StoreAccess }>;
  /** With the "cluster" service: the Node (this host; see node.ts). */
  nodeName?: string;
}

/** The Regions whose roles the local etcd and NATS know (refusal tests use them). */
export const LOCAL_REGIONS = ["east", "west"];
/** Roles given a client certificate and a NATS user in LOCAL_REGIONS. */
const LOCAL_ROLES: StoreRole[] = ["gateway", "map-server", "coordinator", "orchestrator"];

/** A role's least-privilege access to the local etcd or NATS. */
export function roleAccess(
  env: LocalEnv,
  store: "etcd" | "nats",
  role: StoreRole,
  region?: string,
): StoreAccess {
  const name = etcdUserName(role, region);
  const a = env.roles?.[name]?.[store];
  if (!a) throw new Error(`the local environment has no ${store} access for ${name}`);
  return a;
}

/** The environment-variable contract shared with the operator and the workloads
 * (HYBRIDP2P_<STORE>_USERNAME/_PASSWORD/_TLS_DIR next to each address). */
export function envVars(env: LocalEnv): Record<string, string> {
  const vars: Record<string, string> = {};
  if (env.kubeconfig) vars.KUBECONFIG = env.kubeconfig;
  for (const a of [env.etcd, env.nats, env.redis, env.postgres])
    if (a) Object.assign(vars, storeAccessEnv(a));
  return vars;
}

/** Only the stores' credentials and TLS directories of envVars (no addresses): for processes
 * that are given the addresses they should use. */
export function storeCredentialEnv(env: LocalEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(envVars(env)).filter(([k]) => /^HYBRIDP2P_[A-Z]+_(USERNAME|PASSWORD|TLS_DIR)$/.test(k)),
  );
}

const repoRoot = new URL("../..", import.meta.url).pathname;

function bin(name: string): string {
  const path = join(binDir(), name);
  if (!existsSync(path)) {
    throw new Error(
      `${name} is not built. Run: bash ${join(repoRoot, "hack/build-binaries.sh")}  (expected at ${path})`,
    );
  }
  return path;
}

function postgresBinDir(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin/postgres")))
    : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (newest === undefined) {
    throw new Error(
      "PostgreSQL server binaries not found under /usr/lib/postgresql. Install them: apt-get install postgresql",
    );
  }
  return join(root, newest, "bin");
}

function which(cmd: string, hint: string): string {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim();
  } catch {
    throw new Error(`'${cmd}' is not installed. ${hint}`);
  }
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return res.ok;
}

// ---- etcd -----------------------------------------------------------------------------

/** A single-member etcd in `<dir>/<name>`, logging to `<dir>/logs/<name>.log` (the folder must
 * exist); with `pki`, TLS with client certificates required. Given `ports` (those of an earlier
 * start), it comes back in place. Also the flag tests' private etcd (testkit/flags.ts). */
export async function startEtcd(
  name: string,
  dir: string,
  pki?: StorePki,
  ports?: { client: number; peer: number },
): Promise<{ proc: Proc; endpoint: string; ports: { client: number; peer: number } }> {
  const [client, peer] = ports ? [ports.client, ports.peer] : [await freePort(), await freePort()];
  const endpoint = `${pki ? "https" : "http"}://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const proc = startProcess(
    name,
    bin("etcd"),
    [
      `--name=${name}`,
      `--data-dir=${join(dir, name)}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${name}=${peerUrl}`,
      "--unsafe-no-fsync=true",
      "--log-level=warn",
      // Client-certificate auth: the certificate's CN is the etcd user (roles by key prefix).
      ...(pki
        ? [
            "--client-cert-auth",
            `--trusted-ca-file=${join(pki.server, "ca.crt")}`,
            `--cert-file=${join(pki.server, "tls.crt")}`,
            `--key-file=${join(pki.server, "tls.key")}`,
          ]
        : []),
    ],
    join(dir, "logs", `${name}.log`),
  );
  await waitUntil(proc, "its /health endpoint", () =>
    pki ? httpsOk(`${endpoint}/health`, pki.client(ETCD_ROOT_USER)) : httpOk(`${endpoint}/health`),
  );
  return { proc, endpoint, ports: { client, peer } };
}

/** The flag store: etcd with TLS, client-certificate auth, the roles of LOCAL_REGIONS, auth on. */
async function startFlagsEtcd(
  dir: string,
  pki: StorePki,
): Promise<{ proc: Proc; access: StoreAccess; restart: StoreControl }> {
  const e = await startEtcd("flags-etcd", dir, pki);
  const access: StoreAccess = { store: "etcd", url: e.endpoint, tlsDir: pki.client(ETCD_ROOT_USER) };
  const client = new Etcd3({
    hosts: e.endpoint,
    credentials: {
      rootCertificate: readFileSync(join(access.tlsDir!, "ca.crt")),
      certChain: readFileSync(join(access.tlsDir!, "tls.crt")),
      privateKey: readFileSync(join(access.tlsDir!, "tls.key")),
    },
  });
  try {
    await applyEtcdAuth(client, { roles: etcdRoles(LOCAL_REGIONS), rootPassword: pki.secret("etcd-root") });
  } catch (err) {
    await e.proc.stop();
    throw err;
  } finally {
    client.close();
  }
  // Killed and started again in place (same ports, same data directory, auth already applied).
  const { proc, restart } = restartable(
    e.proc,
    async () => (await startEtcd("flags-etcd", dir, pki, e.ports)).proc,
  );
  return { proc, access, restart };
}

/** A local store killed (SIGKILL: a crash) and started again on the same ports and data
 * directory, so its clients reconnect to the same address (chaos/flag-store.ts, chaos/database.ts). */
export interface StoreControl {
  kill(): Promise<void>;
  /** Resolves once the store answers again. */
  start(): Promise<void>;
}

/**
 * Wraps a store's process so it can be killed and started again in place: `proc` stays the one
 * handle that stops whichever process runs (`onStop` runs after it, e.g. to remove data).
 */
function restartable(
  first: Proc,
  relaunch: () => Promise<Proc>,
  onStop: () => void = () => {},
): { proc: Proc; restart: StoreControl } {
  let current = first;
  const proc: Proc = {
    name: first.name,
    logFile: first.logFile,
    get child() {
      return current.child;
    },
    stop: async () => {
      await current.stop();
      onStop();
    },
  };
  const restart: StoreControl = {
    kill: async () => {
      const c = current.child;
      if (c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
      c.kill("SIGKILL");
      await exited;
      await current.stop(); // forgets it (already gone)
    },
    start: async () => {
      current = await relaunch();
    },
  };
  return { proc, restart };
}

// ---- the stores' PKI: a throwaway CA, a serving certificate, client certificates by CN ----------

export interface StorePki {
  dir: string;
  /** ca.crt, tls.crt, tls.key of the stores' serving certificate (127.0.0.1, localhost). */
  server: string;
  /** A TLS directory with the CA only (for clients that authenticate by password). */
  trust: string;
  /** A TLS directory (ca.crt, tls.crt, tls.key) with a client certificate for `cn`, made once. */
  client(cn: string): string;
  /** A random secret by name, made once and kept in the PKI directory. */
  secret(name: string): string;
}

/** Certificates and passwords for the stores, kept under `dir` (made once, reused on restarts). */
export function storePki(dir: string): StorePki {
  which("openssl", "Install it: apt-get install openssl");
  const ca = join(dir, "ca");
  if (!existsSync(join(ca, "ca.crt"))) {
    mkdirSync(ca, { recursive: true });
    openssl(
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt"].concat([
        "-days",
        "7",
        "-subj",
        "/CN=hybridp2p-local-stores-ca",
      ]),
      ca,
    );
  }
  const issue = (name: string, cn: string, ext?: string): string => {
    const out = join(dir, name);
    if (existsSync(join(out, "tls.key"))) return out;
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "ca.crt"), readFileSync(join(ca, "ca.crt")));
    if (ext) writeFileSync(join(out, "cert.ext"), ext);
    openssl(
      ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", `/CN=${cn}`],
      out,
    );
    openssl(
      ["x509", "-req", "-in", "tls.csr", "-CA", join(ca, "ca.crt"), "-CAkey", join(ca, "ca.key")]
        .concat(["-CAcreateserial", "-out", "tls.crt", "-days", "7"])
        .concat(ext ? ["-extfile", "cert.ext"] : []),
      out,
    );
    return out;
  };
  const server = issue(
    "server",
    "hybridp2p-local-stores",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  const trust = join(dir, "trust");
  if (!existsSync(join(trust, "ca.crt"))) {
    mkdirSync(trust, { recursive: true });
    writeFileSync(join(trust, "ca.crt"), readFileSync(join(ca, "ca.crt")));
  }
  return {
    dir,
    server,
    trust,
    client: (cn) =>
      issue(`clients/${cn.replace(/[^A-Za-z0-9_.-]/g, "_")}`, cn, "extendedKeyUsage=clientAuth\n"),
    secret: (name) => {
      const path = join(dir, "secrets", name);
      if (!existsSync(path)) {
        mkdirSync(join(dir, "secrets"), { recursive: true });
        writeFileSync(path, randomBytes(18).toString("base64url"), { mode: 0o600 });
      }
      return readFileSync(path, "utf8");
    },
  };
}

/** Whether an HTTPS GET answers 200 within 2 s; false on any error. */
function httpsGetOk(options: RequestOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ ...options, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

/** Whether GET `url` answers 200 within 2 s, trusting `<dir>/ca.crt` and showing the client
 * certificate `<dir>/<client>.crt` (and `.key`); false on any error. */
async function httpsOk(url: string, dir: string, client = "tls"): Promise<boolean> {
  const u = new URL(url);
  return httpsGetOk({
    host: u.hostname,
    port: Number(u.port),
    path: u.pathname,
    ca: readFileSync(join(dir, "ca.crt")),
    cert: readFileSync(join(dir, `${client}.crt`)),
    key: readFileSync(join(dir, `${client}.key`)),
  });
}

// ---- kube-apiserver -----------------------------------------------------------------------

/** A throwaway CA, a serving certificate for 127.0.0.1 (and, for a cluster, the node's address and
 * the kubernetes Service's), an admin client certificate in system:masters (the API server also
 * shows it to kubelets), and the service-account signing key pair. */
function makeCerts(dir: string, cluster: boolean): void {
  which("openssl", "Install it: apt-get install openssl");
  mkdirSync(dir, { recursive: true });
  openssl(
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.crt",
      "-days",
      "7",
      "-subj",
      "/CN=hybridp2p-local-ca",
    ],
    dir,
  );
  writeFileSync(
    join(dir, "serving.ext"),
    `subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc${
      cluster
        ? `,DNS:kubernetes.default.svc.${NET.clusterDomain},IP:${NET.nodeIP},IP:${NET.kubernetesIP}`
        : ""
    }\n`,
  );
  issueCert(dir, "serving", "/CN=kube-apiserver", "serving.ext");
  issueCert(dir, "admin", "/O=system:masters/CN=hybridp2p-admin");
  openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
}

/**
 * etcd and kube-apiserver. With `cluster`, the API server listens on the node's address (pods reach
 * it there, through the kubernetes Service), authorizes kubelets (Node authorizer and
 * NodeRestriction) and publishes its endpoint; without, it stays on loopback, as envtest's does.
 */
async function startKube(
  dir: string,
  cluster = false,
): Promise<{ procs: Proc[]; kubeconfig: string; server: string }> {
  const pki = join(dir, "pki");
  makeCerts(pki, cluster);
  const etcd = await startEtcd("kube-etcd", dir);
  const port = await freePort();
  const host = cluster ? NET.nodeIP : "127.0.0.1";
  const server = `https://${host}:${port}`;
  const proc = startProcess(
    "kube-apiserver",
    bin("kube-apiserver"),
    [
      `--etcd-servers=${etcd.endpoint}`,
      `--cert-dir=${pki}`,
      `--tls-cert-file=${join(pki, "serving.crt")}`,
      `--tls-private-key-file=${join(pki, "serving.key")}`,
      `--client-ca-file=${join(pki, "ca.crt")}`,
      `--secure-port=${port}`,
      `--bind-address=${host}`,
      `--advertise-address=${host}`,
      ...(cluster
        ? [
            `--service-cluster-ip-range=${NET.serviceCIDR}`,
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            `--kubelet-client-certificate=${join(pki, "admin.crt")}`,
            `--kubelet-client-key=${join(pki, "admin.key")}`,
            "--kubelet-preferred-address-types=InternalIP",
          ]
        : [
            // No kubernetes Service endpoints for a loopback address; envtest does the same.
            "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
          ]),
      "--allow-privileged=true",
      "--service-account-issuer=https://kubernetes.default.svc",
      `--service-account-key-file=${join(pki, "sa.pub")}`,
      `--service-account-signing-key-file=${join(pki, "sa.key")}`,
      "--enable-priority-and-fairness=false",
    ],
    join(dir, "logs", "kube-apiserver.log"),
  );
  await waitUntil(proc, "/readyz", () => httpsOk(`${server}/readyz`, pki, "admin"), 120_000);
  const kubeconfig = writeKubeconfig(join(dir, "kubeconfig"), server, pki, "admin");
  return { procs: [proc, etcd.proc], kubeconfig, server };
}

// ---- NATS, Redis, PostgreSQL ------------------------------------------------------------

const NATS_ADMIN = "hybridp2p-admin";

/**
 * NATS with JetStream, TLS and users: an administrator (`access`) and a user per role of
 * LOCAL_REGIONS with its subject permissions. `port` to start it again where its clients reconnect
 * (tests of outages); the PKI and passwords live under `dir` (or `pki`), so a restart keeps them.
 */
export async function startNats(
  dir: string,
  port?: number,
  pki: StorePki = storePki(join(dir, "store-pki")),
): Promise<{ proc: Proc; url: string; access: StoreAccess; roles: Record<string, StoreAccess> }> {
  port ??= await freePort();
  const monitor = await freePort();
  const url = `nats://127.0.0.1:${port}`;
  const access: StoreAccess = {
    store: "nats",
    url,
    username: NATS_ADMIN,
    password: pki.secret("nats-admin"),
    tlsDir: pki.client(NATS_ADMIN),
  };
  const roles: Record<string, StoreAccess> = {};
  const users = [{ user: NATS_ADMIN, password: access.password! }];
  for (const region of LOCAL_REGIONS) {
    for (const role of LOCAL_ROLES) {
      const user = natsUserName(role, region);
      const password = pki.secret(`nats-${user}`);
      users.push({ user, password, permissions: natsPermissions(role, region) } as (typeof users)[number]);
      roles[user] = { store: "nats", url, username: user, password, tlsDir: access.tlsDir };
    }
  }
  const conf = join(dir, "nats.conf");
  writeFileSync(
    conf,
    renderNatsConfig({
      host: "127.0.0.1",
      port,
      httpPort: monitor,
      jetstreamDir: join(dir, "nats"),
      tls: {
        certFile: join(pki.server, "tls.crt"),
        keyFile: join(pki.server, "tls.key"),
        caFile: join(pki.server, "ca.crt"),
      },
      users,
    }),
  );
  const proc = startProcess("nats-server", bin("nats-server"), ["-c", conf], join(dir, "logs", "nats.log"));
  await waitUntil(proc, "JetStream health", () =>
    httpOk(`http://127.0.0.1:${monitor}/healthz?js-enabled-only=true`),
  );
  return { proc, url, access, roles };
}

/** Redis over TLS only (no plaintext port) with a password. */
async function startRedis(dir: string, pki: StorePki): Promise<{ proc: Proc; access: StoreAccess }> {
  const redis = which(
    "redis-server",
    "Install it: apt-get install redis-server (stands in for DragonflyDB: same protocol)",
  );
  const port = await freePort();
  const data = join(dir, "redis");
  mkdirSync(data, { recursive: true });
  const proc = startProcess(
    "redis",
    redis,
    [
      "--port",
      "0",
      "--tls-port",
      String(port),
      "--tls-cert-file",
      join(pki.server, "tls.crt"),
      "--tls-key-file",
      join(pki.server, "tls.key"),
      "--tls-ca-cert-file",
      join(pki.server, "ca.crt"),
      // Clients prove themselves by password; a client certificate is optional.
      "--tls-auth-clients",
      "optional",
      "--requirepass",
      pki.secret("redis"),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      data,
    ],
    join(dir, "logs", "redis.log"),
  );
  await waitUntil(proc, "its port", () => tcpOpen(port));
  return {
    proc,
    access: {
      store: "dragonfly",
      url: `rediss://127.0.0.1:${port}`,
      password: pki.secret("redis"),
      tlsDir: pki.trust,
    },
  };
}

/** PostgreSQL with TLS and scram-sha-256 over TCP (hostssl only: plaintext is refused); the
 * local socket stays trust for set-up. */
async function startPostgres(
  dir: string,
  pki: StorePki,
): Promise<{ proc: Proc; access: StoreAccess; restart: StoreControl }> {
  const pgBin = postgresBinDir();
  // PostgreSQL refuses to run as root; when we are root, run it as the packaged postgres user.
  const asUser = process.getuid?.() === 0 ? pgUser() : undefined;
  const data = mkdtempSync(join(tmpdir(), "hybridp2p-pg-"));
  if (asUser) chownSync(data, asUser.uid, asUser.gid);
  const password = pki.secret("postgres");
  const pwfile = join(mkdtempSync(join(tmpdir(), "hybridp2p-pgpw-")), "pwfile");
  writeFileSync(pwfile, password);
  if (asUser) for (const f of [join(pwfile, ".."), pwfile]) chownSync(f, asUser.uid, asUser.gid);
  execFileSync(
    join(pgBin, "initdb"),
    ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"].concat([
      "--pwfile",
      pwfile,
      "-E",
      "UTF8",
      "--no-sync",
    ]),
    {
      stdio: ["ignore", "ignore", "pipe"],
      uid: asUser?.uid,
      gid: asUser?.gid,
    },
  );
  rmSync(join(pwfile, ".."), { recursive: true, force: true });
  writeFileSync(
    join(data, "pg_hba.conf"),
    "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n",
  );
  // The server's key must belong to the server's user and be private.
  for (const f of ["tls.crt", "tls.key", "ca.crt"]) {
    writeFileSync(join(data, `server-${f}`), readFileSync(join(pki.server, f)), { mode: 0o600 });
    if (asUser) chownSync(join(data, `server-${f}`), asUser.uid, asUser.gid);
  }
  const port = await freePort();
  const launch = () =>
    startProcess(
      "postgres",
      join(pgBin, "postgres"),
      [
        "-D",
        data,
        "-p",
        String(port),
        "-h",
        "127.0.0.1",
        "-k",
        data,
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "ssl=on",
        "-c",
        `ssl_cert_file=${join(data, "server-tls.crt")}`,
        "-c",
        `ssl_key_file=${join(data, "server-tls.key")}`,
        "-c",
        "password_encryption=scram-sha-256",
      ],
      join(dir, "logs", "postgres.log"),
      { uid: asUser?.uid, gid: asUser?.gid },
    );
  // Killed and started again in place (same port, same data directory); the data directory goes
  // when it stops for good.
  const { proc, restart } = restartable(launch(), relaunch, () =>
    rmSync(data, { recursive: true, force: true }),
  );
  await waitUntil(proc, "connections", () => tcpOpen(port));
  const psql = (sql: string) =>
    execFileSync(
      join(pgBin, "psql"),
      // Over the local socket (trust): set-up only; TCP clients need TLS and the password.
      ["-h", data, "-p", String(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
  await waitUntil(proc, "queries", async () => {
    try {
      psql("select 1");
      return true;
    } catch {
      return false;
    }
  });
  psql("create database hybridp2p");
  async function relaunch(): Promise<Proc> {
    // The killed postmaster's backends exit on noticing its death; until they have, a new
    // postmaster refuses the data directory ("shared memory block is still in use"): retry.
    for (let attempt = 1; ; attempt++) {
      const next = launch();
      try {
        await waitUntil(next, "queries", async () => {
          psql("select 1");
          return true;
        });
        return next;
      } catch (err) {
        await next.stop();
        if (attempt >= 20) throw err;
        await sleep(250);
      }
    }
  }
  return {
    proc,
    restart,
    access: {
      store: "postgres",
      url: `postgres://postgres@127.0.0.1:${port}/hybridp2p`,
      password,
      tlsDir: pki.trust,
    },
  };
}

function pgUser(): { uid: number; gid: number } {
  try {
    const out = execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim();
    const gid = execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim();
    return { uid: Number(out), gid: Number(gid) };
  } catch {
    throw new Error(
      `running as ${userInfo().username}, but PostgreSQL needs a non-root user 'postgres' (apt-get install postgresql creates it)`,
    );
  }
}

// ---- cluster: scheduler, controller manager and a real node, so pods really run -------------
// Optional (most tests need only the API): services: [..., "cluster"]. The node is this host
// (node.ts), one per machine: a second cluster waits for the first to stop.

function insecureHealthy(port: number): Promise<boolean> {
  // Their serving certificates are self-signed; this only asks whether they are up.
  return httpsGetOk({ host: "127.0.0.1", port, path: "/healthz", rejectUnauthorized: false });
}

/** kube-controller-manager (allocating the node its pod CIDR) and kube-scheduler. */
async function startControllers(env: LocalEnv): Promise<Proc[]> {
  const dir = env.stateDir;
  const pki = join(dir, "pki");
  const kc = env.kubeconfig!;
  const common = [
    `--kubeconfig=${kc}`,
    `--authentication-kubeconfig=${kc}`,
    `--authorization-kubeconfig=${kc}`,
    "--bind-address=127.0.0.1",
    // One instance each: no election to wait for.
    "--leader-elect=false",
  ];
  const procs: Proc[] = [];
  try {
    const [kcmPort, schedPort] = [await freePort(), await freePort()];
    const kcm = startProcess(
      "kube-controller-manager",
      bin("kube-controller-manager"),
      [
        ...common,
        `--secure-port=${kcmPort}`,
        `--cert-dir=${join(dir, "kcm")}`,
        `--service-account-private-key-file=${join(pki, "sa.key")}`,
        `--root-ca-file=${join(pki, "ca.crt")}`,
        "--cluster-name=hybridp2p-local",
        "--allocate-node-cidrs=true",
        `--cluster-cidr=${NET.clusterCIDR}`,
        "--node-cidr-mask-size=24",
        `--service-cluster-ip-range=${NET.serviceCIDR}`,
      ],
      join(dir, "logs", "kube-controller-manager.log"),
    );
    procs.push(kcm);
    const sched = startProcess(
      "kube-scheduler",
      bin("kube-scheduler"),
      [...common, `--secure-port=${schedPort}`, `--cert-dir=${join(dir, "scheduler")}`],
      join(dir, "logs", "kube-scheduler.log"),
    );
    procs.push(sched);
    await Promise.all([
      waitUntil(kcm, "/healthz", () => insecureHealthy(kcmPort), 120_000),
      waitUntil(sched, "/healthz", () => insecureHealthy(schedPort), 120_000),
    ]);
    return procs;
  } catch (err) {
    for (const p of procs.reverse()) await p.stop();
    throw err;
  }
}

/**
 * Runs hack/ image builds (each `[script, ...args]`, e.g. `["build-images.sh", "operator"]`; they
 * skip cached work) and returns the image names they print ("IMAGE <name> ..." lines), for the
 * "cluster" service to import into its node.
 */
export function buildImages(...builds: string[][]): string[] {
  const images: string[] = [];
  for (const [script, ...args] of builds) {
    const out = execFileSync("bash", [join(repoRoot, "hack", script!), ...args], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    for (const line of out.split("\n")) if (line.startsWith("IMAGE ")) images.push(line.split(" ")[1]!);
  }
  return images;
}

// ---- the whole environment ---------------------------------------------------------------

export interface Running {
  env: LocalEnv;
  /** With "cluster": the node on this host. */
  node?: LocalNode;
  /** With "flags-etcd": kill it and start it again in place. */
  flagsEtcd?: StoreControl;
  /** With "postgres": kill it and start it again in place. */
  postgres?: StoreControl;
  stop(): Promise<void>;
}

async function timed(
  what: string,
  f: () => Promise<void>,
  log: (m: string) => void = () => {},
): Promise<void> {
  const t0 = Date.now();
  await f();
  log(`${what} ready in ${Date.now() - t0} ms`);
}

export async function startLocalEnv(
  opts: {
    services?: Service[];
    stateDir?: string;
    log?: (msg: string) => void;
    /** With "cluster": images in podman's store to import into the node's containerd. */
    images?: string[];
    /** With "cluster": snapshot the host when the node claims it and after it stops (LocalNode.hostBefore/After). */
    checkHost?: boolean;
  } = {},
): Promise<Running> {
  const services = opts.services ?? ALL_SERVICES;
  const log = opts.log ?? (() => {});
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), "hybridp2p-local-"));
  mkdirSync(join(stateDir, "logs"), { recursive: true });
  const procs: Proc[] = [];
  const env: LocalEnv = { stateDir };
  let node: LocalNode | undefined;
  let flagsEtcd: StoreControl | undefined;
  let postgres: StoreControl | undefined;
  const stop = async () => {
    // The node first (it stops its pods and puts the host back as it was), then the rest in
    // reverse start order: the apiserver goes before its etcd.
    await node?.stop();
    for (const p of procs.reverse()) await p.stop();
    procs.length = 0;
    // A state directory of our own making goes too (benchmarks left hundreds of megabytes
    // behind each run); HYBRIDP2P_KEEP_STATE=1 keeps it for reading the logs.
    if (!opts.stateDir && !process.env.HYBRIDP2P_KEEP_STATE)
      rmSync(stateDir, { recursive: true, force: true });
  };
  const started = Date.now();
  const cluster = services.includes("cluster");
  // The stores' throwaway CA, serving and client certificates and passwords.
  const pki = storePki(join(stateDir, "store-pki"));
  const setRole = (user: string, store: "etcd" | "nats", a: StoreAccess) => {
    env.roles = { ...env.roles, [user]: { ...env.roles?.[user], [store]: a } };
  };
  if (cluster) {
    if (!services.includes("kube")) throw new Error('the "cluster" service needs "kube"');
    // The node's address must exist before the API server binds it.
    node = await LocalNode.claim(stateDir, { log, checkHost: opts.checkHost });
  }
  // allSettled, not all: on a failure every service that did start is known, so all are stopped.
  const results = await Promise.allSettled([
    ...(node ? [timed("container runtime", () => node!.startRuntime(opts.images), log)] : []),
    ...services
      .filter((s) => s !== "cluster")
      .map(async (s) => {
        const t0 = Date.now();
        switch (s) {
          case "kube": {
            const k = await startKube(stateDir, cluster);
            procs.push(...k.procs.reverse());
            node?.adopt(k.procs);
            env.kubeconfig = k.kubeconfig;
            env.kubeApiServer = k.server;
            break;
          }
          case "flags-etcd": {
            const e = await startFlagsEtcd(stateDir, pki);
            procs.push(e.proc);
            flagsEtcd = e.restart;
            env.etcd = e.access;
            env.etcdEndpoints = e.access.url;
            const users = [etcdUserName("operator")];
            for (const region of LOCAL_REGIONS)
              for (const role of LOCAL_ROLES) users.push(etcdUserName(role, region));
            for (const user of users)
              setRole(user, "etcd", { store: "etcd", url: e.access.url, tlsDir: pki.client(user) });
            break;
          }
          case "nats": {
            const n = await startNats(stateDir, undefined, pki);
            procs.push(n.proc);
            env.nats = n.access;
            env.natsUrl = n.url;
            for (const [user, a] of Object.entries(n.roles)) setRole(user, "nats", a);
            break;
          }
          case "redis": {
            const r = await startRedis(stateDir, pki);
            procs.push(r.proc);
            env.redis = r.access;
            env.redisUrl = r.access.url;
            break;
          }
          case "postgres": {
            const p = await startPostgres(stateDir, pki);
            procs.push(p.proc);
            postgres = p.restart;
            env.postgres = p.access;
            env.databaseUrl = p.access.url;
            break;
          }
        }
        log(`${s} ready in ${Date.now() - t0} ms`);
      }),
  ]);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) {
    await stop();
    throw failed.reason;
  }
  if (node) {
    const t0 = Date.now();
    try {
      const controllers = await startControllers(env);
      procs.push(...controllers);
      node.adopt(controllers);
      await node.join({
        server: env.kubeApiServer!,
        pki: join(stateDir, "pki"),
        adminKubeconfig: env.kubeconfig!,
      });
      env.nodeName = node.nodeName;
    } catch (err) {
      await stop();
      throw err;
    }
    log(`cluster ready in ${Date.now() - t0} ms`);
  }
  writeFileSync(
    join(stateDir, "env"),
    `${Object.entries(envVars(env))
      .map(([k, v]) => `${k}=${v}`)
      .join("\n")}\n`,
  );
  log(`local environment ready in ${Date.now() - started} ms (state in ${stateDir})`);
  return { env, node, flagsEtcd, postgres, stop };
}
