// A Region's managed stores as the e2e suite reaches them: `kubectl port-forward` to the store's
// pod (the stores' NetworkPolicies admit only the Region's components and the operator, and a
// port-forward connects inside the pod, so it works the same on any cluster). Its flag store
// (etcd) and its report channel (NATS: the pods' acks, as the operator hears them).
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { layout, type PodReport, parsePointer } from "../platform/flags/layout.ts";
import { ReportTable } from "../platform/flags/reports.ts";
import { connectNats, type StoreAccess } from "../platform/stores/access.ts";

type StoreCredentials = Pick<StoreAccess, "username" | "password" | "tlsDir">;

import { binDir } from "../testkit/local/services.ts";

export const PREFIX = "/hybridp2p/v1/";

/** Forwards a local port to `port` of `pod`; resolves with the local port. */
export async function portForward(
  kubeconfig: string,
  namespace: string,
  pod: string,
  port: number,
): Promise<{ port: number; proc: ChildProcess }> {
  const proc = spawn(
    join(binDir(), "kubectl"),
    [
      "--kubeconfig",
      kubeconfig,
      "port-forward",
      "-n",
      namespace,
      `pod/${pod}`,
      "--address",
      "127.0.0.1",
      `:${port}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const local = await new Promise<number>((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    proc.once("exit", (code) => reject(new Error(`kubectl port-forward to ${pod} exited (${code}): ${out}`)));
  });
  return { port: local, proc };
}

/** One Region's flag store and report channel, through port-forwards to its managed stores. */
export class RegionStores {
  private readonly kubeconfig: string;
  private readonly namespace: string;
  private readonly region: string;
  private etcd: Etcd3 | undefined;
  private nc: NatsConnection | undefined;
  private table: ReportTable | undefined;
  private readonly forwards: ChildProcess[] = [];

  /** Credentials and TLS of the Region's stores (from the Secrets the operator generates), used
   * at the port-forwarded address; none: plaintext without auth. */
  private readonly access: { etcd?: StoreCredentials; nats?: StoreCredentials };

  constructor(
    kubeconfig: string,
    namespace: string,
    region: string,
    access: { etcd?: StoreCredentials; nats?: StoreCredentials } = {},
  ) {
    this.access = access;
    this.kubeconfig = kubeconfig;
    this.namespace = namespace;
    this.region = region;
  }

  async flagStore(): Promise<Etcd3> {
    if (this.etcd) return this.etcd;
    const f = await portForward(this.kubeconfig, this.namespace, `${this.region}-etcd-0`, 2379);
    this.forwards.push(f.proc);
    const scheme = this.access.etcd?.tlsDir ? "https" : "http";
    this.etcd = connectFlagStore({
      ...this.access.etcd,
      store: "etcd",
      url: `${scheme}://127.0.0.1:${f.port}`,
    });
    return this.etcd;
  }

  /** The live epoch of the Region's flag store (0 before the first publish). */
  async epoch(): Promise<number> {
    const raw = await (await this.flagStore()).get(layout(PREFIX).pointer).string();
    return raw === null ? 0 : parsePointer("pointer", raw).epoch;
  }

  /** The reports (acks) of the Region's pods, as the operator receives them. */
  async reports(zone?: string): Promise<PodReport[]> {
    if (this.table === undefined) {
      const f = await portForward(this.kubeconfig, this.namespace, `${this.region}-nats-0`, 4222);
      this.forwards.push(f.proc);
      this.nc = await connectNats(
        { ...this.access.nats, store: "nats", url: `nats://127.0.0.1:${f.port}` },
        { name: "e2e" },
      );
      this.table = new ReportTable(this.nc, layout(PREFIX), { namespace: this.namespace });
      await this.table.start();
      await new Promise((r) => setTimeout(r, 500)); // the pods' answers to the sync request
    }
    return zone === undefined ? this.table.reports() : this.table.zoneReports(this.namespace, zone);
  }

  async close(): Promise<void> {
    this.table?.close();
    await this.nc?.close().catch(() => undefined);
    this.etcd?.close();
    for (const p of this.forwards) p.kill();
  }
}
