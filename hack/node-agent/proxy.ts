// The node's service proxy (podman pods): what kube-proxy's nftables mode does, reduced to what
// the local cluster needs. A Service's ClusterIP:port, and its NodePort on the node's address,
// are DNATed to a random ready endpoint (the port resolved through the EndpointSlice's named
// ports, so a Service port may differ from its targetPort); what was DNATed is masqueraded, so
// a pod reaching a pod on the same bridge through a Service gets the answer back through us.
//
// Why not kube-proxy itself (it builds from the same module and runs here): it owns one nftables
// table per host, so two local clusters on one machine (a test run next to `hack/local-region.sh`)
// would rewrite each other's rules. This proxy's table is named after its node, and each local
// apiserver draws its own service range (testkit/local/services.ts), so clusters do not collide.
//
// renderRules is pure; ServiceProxy applies a ruleset atomically (`nft -f -`: the table is
// deleted and rebuilt in one transaction) only when it changed, and removes it on stop.
import { execFile } from "node:child_process";

export interface ServiceView {
  metadata: { name: string; namespace: string };
  spec?: {
    type?: string;
    clusterIP?: string;
    ports?: {
      name?: string;
      protocol?: string;
      port: number;
      targetPort?: number | string;
      nodePort?: number;
    }[];
  };
}

export interface SliceView {
  metadata: { namespace: string; labels?: Record<string, string> };
  ports?: { name?: string; protocol?: string; port?: number }[];
  endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[];
}

const MASQ_MARK = "0x4000";

/** The nftables script of a node's proxy: every Service port with ready endpoints. */
export function renderRules(
  table: string,
  nodeIP: string,
  services: ServiceView[],
  slices: SliceView[],
): string {
  const rules: string[] = [];
  for (const svc of [...services].sort((a, b) => key(a).localeCompare(key(b)))) {
    const ip = svc.spec?.clusterIP;
    if (!ip || ip === "None") continue;
    const mine = slices.filter(
      (sl) =>
        sl.metadata.namespace === svc.metadata.namespace &&
        sl.metadata.labels?.["kubernetes.io/service-name"] === svc.metadata.name,
    );
    for (const p of svc.spec?.ports ?? []) {
      const proto = (p.protocol ?? "TCP").toLowerCase();
      if (proto !== "tcp" && proto !== "udp") continue;
      const targets = mine.flatMap((sl) => {
        const sp = (sl.ports ?? []).find(
          (x) => (x.name ?? "") === (p.name ?? "") && (x.protocol ?? "TCP").toLowerCase() === proto,
        );
        if (sp?.port === undefined) return [];
        return (sl.endpoints ?? [])
          .filter((e) => e.conditions?.ready !== false && e.addresses[0])
          .map((e) => `${e.addresses[0]} . ${sp.port}`);
      });
      if (targets.length === 0) continue;
      const to = `numgen random mod ${targets.length} map { ${targets.map((t, i) => `${i} : ${t}`).join(", ")} }`;
      const nat = `meta mark set meta mark | ${MASQ_MARK} dnat to ${to}`;
      rules.push(`    ip daddr ${ip} ${proto} dport ${p.port} ${nat}`);
      if (p.nodePort) rules.push(`    ip daddr ${nodeIP} ${proto} dport ${p.nodePort} ${nat}`);
    }
  }
  return [
    `table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    "  chain prerouting { type nat hook prerouting priority -100; policy accept; jump services; }",
    "  chain output { type nat hook output priority -100; policy accept; jump services; }",
    `  chain postrouting { type nat hook postrouting priority 100; policy accept; meta mark & ${MASQ_MARK} == ${MASQ_MARK} masquerade; }`,
    "  chain services {",
    ...rules,
    "  }",
    "}",
    "",
  ].join("\n");
}

function key(s: ServiceView): string {
  return `${s.metadata.namespace}/${s.metadata.name}`;
}

function nft(args: string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile("nft", args, (err, _out, stderr) =>
      err ? reject(new Error(`nft ${args.join(" ")}: ${stderr.trim() || err.message}`)) : resolve(),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

export class ServiceProxy {
  private applied = "";
  private readonly table: string;

  constructor(node: string) {
    // nftables names: letters, digits, '-' and '_'.
    this.table = `hp-proxy-${node.replace(/[^A-Za-z0-9_-]/g, "-")}`;
  }

  /** Whether this machine can run it: nft present and allowed (root). */
  static async available(): Promise<boolean> {
    return nft(["list", "tables"]).then(
      () => true,
      () => false,
    );
  }

  async apply(nodeIP: string, services: ServiceView[], slices: SliceView[]): Promise<void> {
    const rules = renderRules(this.table, nodeIP, services, slices);
    if (rules === this.applied) return;
    await nft(["-f", "-"], rules);
    this.applied = rules;
  }

  async stop(): Promise<void> {
    if (this.applied === "") return;
    this.applied = "";
    await nft(["delete", "table", "ip", this.table]).catch(() => {});
  }
}
