import { describe, expect, it } from "vitest";
import { answer, parseQuery, resolveClusterName, type ServiceRecord } from "./dns.ts";

function query(name: string, type = 1): Buffer {
  const labels = name.split(".").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, ...labels, Buffer.from([0, 0, type, 0, 1])]);
}

const services: ServiceRecord[] = [
  { namespace: "demo", name: "gateway", endpoints: [{ ip: "10.88.0.7" }, { ip: "10.88.0.8" }] },
  { namespace: "demo", name: "etcd", endpoints: [{ ip: "10.88.0.9", hostname: "etcd-0" }] },
  { namespace: "demo", name: "empty", endpoints: [] },
];

describe("cluster DNS", () => {
  it("parses a query and answers with A records that echo the question", () => {
    const q = parseQuery(query("Gateway.demo.svc.cluster.local"))!;
    expect(q).toMatchObject({ id: 0x1234, name: "gateway.demo.svc.cluster.local", type: 1 });
    const a = answer(q, ["10.88.0.7", "10.88.0.8"]);
    expect(a.readUInt16BE(0)).toBe(0x1234);
    expect(a.readUInt16BE(2) & 0x800f).toBe(0x8000); // a response, NOERROR
    expect(a.readUInt16BE(6)).toBe(2);
    expect([...a.subarray(a.length - 4)]).toEqual([10, 88, 0, 8]);
    expect(answer(q, undefined).readUInt16BE(2) & 0xf).toBe(3); // NXDOMAIN
    expect(
      answer(parseQuery(query("gateway.demo.svc.cluster.local", 28))!, ["10.88.0.7"]).readUInt16BE(6),
    ).toBe(0);
  });

  it("resolves services, StatefulSet pods and the API server; leaves other names to the host", () => {
    const r = (n: string) => resolveClusterName(n, services, "10.88.0.1");
    expect(r("gateway.demo.svc.cluster.local")).toEqual(["10.88.0.7", "10.88.0.8"]);
    expect(r("etcd-0.etcd.demo.svc.cluster.local")).toEqual(["10.88.0.9"]);
    expect(r("etcd-1.etcd.demo.svc.cluster.local")).toBeNull();
    expect(r("empty.demo.svc.cluster.local")).toEqual([]);
    expect(r("nope.demo.svc.cluster.local")).toBeNull();
    expect(r("gateway.demo.svc.demo.svc.cluster.local")).toBeNull();
    expect(r("kubernetes.default.svc.cluster.local")).toEqual(["10.88.0.1"]);
    expect(r("registry.npmjs.org")).toBeUndefined();
  });
});
