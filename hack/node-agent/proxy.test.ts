import { describe, expect, it } from "vitest";
import { renderRules, type ServiceView, type SliceView } from "./proxy.ts";

const svc = (name: string, spec: ServiceView["spec"]): ServiceView => ({
  metadata: { name, namespace: "demo" },
  spec,
});
const slice = (service: string, ports: SliceView["ports"], ready: [string, boolean][]): SliceView => ({
  metadata: { namespace: "demo", labels: { "kubernetes.io/service-name": service } },
  ports,
  endpoints: ready.map(([ip, ok]) => ({ addresses: [ip], conditions: { ready: ok } })),
});

describe("service proxy rules", () => {
  it("DNATs a ClusterIP port and its NodePort to the ready endpoints' named target port", () => {
    const out = renderRules(
      "hp-proxy-n1",
      "10.89.1.1",
      [
        svc("gateway", {
          type: "NodePort",
          clusterIP: "10.96.0.20",
          ports: [{ name: "game", port: 7000, targetPort: "game", nodePort: 30700 }],
        }),
      ],
      [
        slice(
          "gateway",
          [{ name: "game", port: 7100 }],
          [
            ["10.89.1.5", true],
            ["10.89.1.6", true],
            ["10.89.1.7", false],
          ],
        ),
      ],
    );
    const to = "numgen random mod 2 map { 0 : 10.89.1.5 . 7100, 1 : 10.89.1.6 . 7100 }";
    expect(out).toContain(
      `ip daddr 10.96.0.20 tcp dport 7000 meta mark set meta mark | 0x4000 dnat to ${to}`,
    );
    expect(out).toContain(
      `ip daddr 10.89.1.1 tcp dport 30700 meta mark set meta mark | 0x4000 dnat to ${to}`,
    );
    expect(out).not.toContain("10.89.1.7");
    // Rebuilt whole in one transaction, masquerading what it DNATed.
    expect(out.startsWith("table ip hp-proxy-n1\ndelete table ip hp-proxy-n1\n")).toBe(true);
    expect(out).toContain("meta mark & 0x4000 == 0x4000 masquerade");
  });

  it("leaves out headless Services, Services without ready endpoints and other protocols", () => {
    const out = renderRules(
      "t",
      "10.89.1.1",
      [
        svc("headless", { clusterIP: "None", ports: [{ port: 80 }] }),
        svc("empty", { clusterIP: "10.96.0.30", ports: [{ port: 80 }] }),
        svc("sctp", { clusterIP: "10.96.0.31", ports: [{ port: 80, protocol: "SCTP" }] }),
        svc("dns", { clusterIP: "10.96.0.32", ports: [{ name: "dns", port: 53, protocol: "UDP" }] }),
      ],
      [
        slice("headless", [{ port: 80 }], [["10.89.1.5", true]]),
        slice("empty", [{ port: 80 }], [["10.89.1.5", false]]),
        slice("sctp", [{ port: 80, protocol: "SCTP" }], [["10.89.1.5", true]]),
        slice("dns", [{ name: "dns", port: 5353, protocol: "UDP" }], [["10.89.1.8", true]]),
      ],
    );
    const rules = out.split("\n").filter((l) => l.includes("dnat"));
    expect(rules).toEqual([
      "    ip daddr 10.96.0.32 udp dport 53 meta mark set meta mark | 0x4000 dnat to numgen random mod 1 map { 0 : 10.89.1.8 . 5353 }",
    ]);
  });
});
