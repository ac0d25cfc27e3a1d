// A Region's managed stores as the e2e suite and the chaos scenarios on a cluster reach them:
// `kubectl port-forward` to the store's pod (the stores' NetworkPolicies admit only the Region's
// components and the operator, and a port-forward connects inside the pod, so it works the same
// on any cluster). Its flag store (etcd) and its report channel (NATS: the pods' acks, as the
// operator hears them).
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Etcd3 } from "etcd3";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { layout, type PodReport, parsePointer } from "../platform/flags/layout.ts";
import { ReportTable } from "../platform/flags/reports.ts";
import { KubeClient, resources } from "../platform/kube/kube.ts";
import type { KubeObject } from "../platform/kube/meta.ts";
import { connectNats, type StoreAccess } from "../platform/stores/access.ts";
import { materialise } from "../platform/stores/files.ts";
import { GENERATED_SECRET } from "../platform/stores/generated.ts";
import { natsUserName } from "../platform/stores/roles.ts";

type StoreCredentials = Pick<StoreAccess, "username" | "password" | "tlsDir">;

import { binDir } from "./local/services.ts";

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

  /** Credentials and TLS of the Region's stores, used at the port-forwarded address; unset: read
   * from the Secrets the operator generated for the Region (its etcd root certificate, which reads
   * every key; its own NATS user, which hears the reports), or none when it made none. */
  private access: { etcd?: StoreCredentials; nats?: StoreCredentials } | undefined;

  constructor(
    kubeconfig: string,
    namespace: string,
    region: string,
    access?: { etcd?: StoreCredentials; nats?: StoreCredentials },
  ) {
    this.access = access;
    this.kubeconfig = kubeconfig;
    this.namespace = namespace;
    this.region = region;
  }

  private async credentials(): Promise<{ etcd?: StoreCredentials; nats?: StoreCredentials }> {
    if (this.access) return this.access;
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfig);
    const client = await new KubeClient(kc).init();
    try {
      const read = async (name: string) => {
        const s = await client.get<KubeObject & { data?: Record<string, string> }>(
          resources.secret,
          this.namespace,
          name,
        );
        return s
          ? Object.fromEntries(
              Object.entries(s.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]),
            )
          : undefined;
      };
      const r = this.region;
      const root = await read(GENERATED_SECRET.etcdClient(r, "root"));
      const nats = await read(GENERATED_SECRET.credentials(r, "nats"));
      const ca = await read(GENERATED_SECRET.ca(r));
      this.access = {
        etcd: root ? { tlsDir: materialise(`e2e.${this.namespace}.${r}-etcd-root`, root) } : undefined,
        nats:
          nats && ca
            ? {
                username: natsUserName("operator", r),
                password: nats.operator,
                tlsDir: materialise(`e2e.${this.namespace}.${r}-ca`, { "ca.crt": ca["ca.crt"]! }),
              }
            : undefined,
      };
      return this.access;
    } finally {
      client.close();
    }
  }

  async flagStore(): Promise<Etcd3> {
    if (this.etcd) return this.etcd;
    const access = await this.credentials();
    const f = await portForward(this.kubeconfig, this.namespace, `${this.region}-etcd-0`, 2379);
    this.forwards.push(f.proc);
    const scheme = access.etcd?.tlsDir ? "https" : "http";
    this.etcd = connectFlagStore({
      ...access.etcd,
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
      const access = await this.credentials();
      this.nc = await connectNats(
        { ...access.nats, store: "nats", url: `nats://127.0.0.1:${f.port}` },
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
