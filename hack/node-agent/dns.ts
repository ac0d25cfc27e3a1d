// Cluster DNS for podman pods (there is no CoreDNS here): answers A queries for
// <service>.<namespace>.svc.cluster.local with the Service's ClusterIP where the node proxies it
// (proxy.ts), else (headless Services, or no nftables) the ready endpoints' pod IPs, then the
// Service's port must equal its targetPort; <hostname>.<service>... for StatefulSet pods, and
// kubernetes.default.svc with the node's API forwarder; every other name goes to the host's
// resolver. Only the packet handling is here, pure; agent.ts serves it over UDP.

export const CLUSTER_DOMAIN = "cluster.local";

export interface DnsQuestion {
  id: number;
  flags: number;
  name: string;
  type: number;
  /** The question section as received, echoed in the answer. */
  question: Buffer;
}

export const TYPE_A = 1;

/** The first question of a query, or undefined when it is not one we can read. */
export function parseQuery(msg: Buffer): DnsQuestion | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) < 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  for (;;) {
    const len = msg[at];
    if (len === undefined || len >= 0xc0) return undefined;
    at++;
    if (len === 0) break;
    labels.push(msg.toString("ascii", at, at + len));
    at += len;
  }
  if (at + 4 > msg.length) return undefined;
  return {
    id: msg.readUInt16BE(0),
    flags: msg.readUInt16BE(2),
    name: labels.join(".").toLowerCase(),
    type: msg.readUInt16BE(at),
    question: msg.subarray(12, at + 4),
  };
}

/** An authoritative answer: A records for the addresses, NXDOMAIN when the name is unknown
 * (addresses undefined), an empty NOERROR for other record types of a known name. */
export function answer(q: DnsQuestion, addresses: string[] | undefined): Buffer {
  const records = q.type === TYPE_A ? (addresses ?? []) : [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  const rd = q.flags & 0x0100;
  const rcode = addresses === undefined ? 3 : 0;
  header.writeUInt16BE(0x8000 | 0x0400 | rd | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  const answers = records.map((ip) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    rr.writeUInt16BE(TYPE_A, 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(5, 6); // a short TTL: endpoints change as pods come and go
    rr.writeUInt16BE(4, 10);
    ip.split(".").forEach((octet, i) => {
      rr[12 + i] = Number(octet);
    });
    return rr;
  });
  return Buffer.concat([header, q.question, ...answers]);
}

export interface ServiceRecord {
  namespace: string;
  name: string;
  /** Ready endpoints: pod IP and, for StatefulSet pods, their hostname. */
  endpoints: { ip: string; hostname?: string }[];
  /** Where the node proxies the Service (proxy.ts): the name then resolves to it. */
  clusterIP?: string;
}

/** Resolves a cluster name: undefined when it is not a cluster name at all (forward it), null
 * when it is one that does not exist (NXDOMAIN), else the addresses. */
export function resolveClusterName(
  name: string,
  services: ServiceRecord[],
  api: string,
): string[] | null | undefined {
  const suffix = `.svc.${CLUSTER_DOMAIN}`;
  if (!name.endsWith(suffix) && name !== `svc.${CLUSTER_DOMAIN}` && !name.endsWith(`.${CLUSTER_DOMAIN}`)) {
    return undefined;
  }
  if (!name.endsWith(suffix)) return null;
  const parts = name.slice(0, -suffix.length).split(".");
  if (parts.length === 2 && parts[0] === "kubernetes" && parts[1] === "default") return [api];
  const [host, svc, ns] = parts.length === 3 ? parts : [undefined, parts[0], parts[1]];
  if (parts.length < 2 || parts.length > 3) return null;
  const s = services.find((r) => r.name === svc && r.namespace === ns);
  if (!s) return null;
  if (host === undefined && s.clusterIP) return [s.clusterIP];
  const eps = host === undefined ? s.endpoints : s.endpoints.filter((e) => e.hostname === host);
  return host !== undefined && eps.length === 0 ? null : eps.map((e) => e.ip);
}
