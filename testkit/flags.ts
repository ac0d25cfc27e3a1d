// Test and benchmark helpers for the flag plane: a private etcd that can be killed and restarted
// on the same port and data directory, and a TCP proxy that can cut one client off from etcd.
import { mkdirSync } from "node:fs";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { type FlagPlane, setupFlagPlane } from "../operator/controllers/flagplane.ts";
import type { PublishResult } from "../operator/flags/publisher.ts";
import { layout, type PodReport } from "../platform/flags/layout.ts";
import { ReportTable } from "../platform/flags/reports.ts";
import { Manager } from "../platform/kube/manager.ts";
import { Metrics } from "../platform/kube/metrics.ts";
import { type Logger, silentLogger } from "../platform/log.ts";
import type { StoreAccess } from "../platform/stores/access.ts";
import { ETCD_ROOT_USER } from "../platform/stores/roles.ts";
import { pollUntil } from "../platform/time.ts";
import { testClient } from "./kube.ts";
import { type StorePki, startEtcd } from "./local/services.ts";
import { freePort, type Proc } from "./processes.ts";

export interface TestEtcd {
  endpoint: string;
  /** The endpoint with the client certificate (with a PKI) to reach it. */
  access: StoreAccess;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** A private etcd; with `pki` (the local stores' PKI, see storePki), over TLS with client
 * certificates required, as the local flag store (without its roles: any certificate of the CA). */
export async function startTestEtcd(
  dir: string,
  name = "flags-test-etcd",
  pki?: StorePki,
): Promise<TestEtcd> {
  mkdirSync(join(dir, "logs"), { recursive: true });
  const first = await startEtcd(name, dir, pki);
  const { endpoint, ports } = first;
  const access: StoreAccess = { store: "etcd", url: endpoint, tlsDir: pki?.client(ETCD_ROOT_USER) };
  const port = ports.client;
  let proc: Proc | undefined = first.proc;
  // Started again on the same ports and data directory.
  const start = async () => {
    proc = (await startEtcd(name, dir, pki, ports)).proc;
  };
  return {
    endpoint,
    access,
    port,
    start,
    stop: async () => {
      await proc?.stop();
      proc = undefined;
    },
  };
}

export interface CutProxy {
  endpoint: string;
  /** Drops every connection and refuses new ones. */
  cut(): Promise<void>;
  /** Accepts connections again, on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

/** A loopback TCP proxy to `targetPort` that can be cut and restored. */
export async function cutProxy(targetPort: number): Promise<CutProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const srv = createServer((client) => {
        const upstream = tcpConnect(targetPort, "127.0.0.1");
        sockets.add(client);
        sockets.add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        client.pipe(upstream).pipe(client);
      });
      srv.once("error", reject);
      srv.listen(port, "127.0.0.1", () => resolve());
      server = srv;
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      const srv = server;
      server = undefined;
      for (const s of sockets) s.destroy();
      sockets.clear();
      if (srv === undefined) return resolve();
      srv.close(() => resolve());
    });
  await listen();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    cut: stopListening,
    restore: listen,
    close: stopListening,
  };
}

/** Polls until `check` returns a value other than undefined or false (no timing assertions). */
export function eventually<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  return pollUntil(what, check, timeoutMs, 20);
}

/** The pods' reports of `namespace` as the operator hears them (a started ReportTable; close() it). */
export async function reportsOn(nc: NatsConnection, prefix: string, namespace: string): Promise<ReportTable> {
  const t = new ReportTable(nc, layout(prefix), { namespace });
  await t.start();
  return t;
}

// The operator's compiler and publisher, for workload tests that need flag documents published
// as the operator publishes them (workloads may not import the operator; the test kit joins both).
export { compile } from "../operator/flags/compiler.ts";
export { FlagPublisher } from "../operator/flags/publisher.ts";

export type TestFlagPlane = FlagPlane & {
  /** The Manager's /metrics text (the flag plane's series among them). */
  metrics(): Promise<string>;
  stop(): Promise<void>;
};

/** The operator's flag plane alone (no Region or Zone controllers), on a Manager of its own that
 * leads at once: for tests and benchmarks that play the workloads themselves. Without `etcd` and
 * `nats` each Region's own stores are used (give the Regions External stores the test can reach). */
export async function startFlagPlane(o: {
  kubeconfig: string;
  /** One flag store for every Region. */
  etcd?: Etcd3;
  /** One report channel for every Region. */
  nats?: NatsConnection;
  /** Watch only this namespace; all when unset. */
  namespace?: string;
  identity: string;
  prefix?: string;
  onPublish?: (result: PublishResult, regions: string[]) => void;
  onReport?: (report: PodReport) => void;
  log?: Logger;
}): Promise<TestFlagPlane> {
  const client = await testClient(o.kubeconfig);
  const log = o.log ?? silentLogger();
  const mgr = new Manager({ client, metrics: new Metrics(), log, namespace: o.namespace });
  const { etcd, nats, identity, prefix, onPublish, onReport } = o;
  const plane = setupFlagPlane(mgr, { etcd, nats, identity, prefix, onPublish, onReport });
  await mgr.start();
  return {
    ...plane,
    metrics: () => mgr.metrics.registry.metrics(),
    async stop() {
      await mgr.stop();
      client.close();
    },
  };
}
