import { describe, expect, it } from "vitest";
import type { KObj } from "../common.ts";
import { formatTop, parseMetrics, topRows } from "./top.ts";

const zone = (name: string, status: KObj["status"]): KObj => ({
  metadata: { name, namespace: "demo" },
  spec: { regionRef: { name: "demo" }, mapServer: { replicas: 2 } },
  status,
});
const exposition = (applied: number, players: Record<string, number>, budget: number) =>
  [
    "# HELP hybridp2p_map_players Players",
    "# TYPE hybridp2p_map_players gauge",
    ...Object.entries(players).map(([m, n]) => `hybridp2p_map_players{map="${m}",zone="prt-fild08"} ${n}`),
    `hybridp2p_flags_applied_epoch{zone="prt-fild08"} ${applied}`,
    `hybridp2p_map_tick_budget_used_ratio ${budget}`,
  ].join("\n");

describe("hybridctl top", () => {
  it("parses the Prometheus text format, escaped label values included", () => {
    const s = parseMetrics('# HELP x y\nx_total{a="b",c="say \\"hi\\""} 3\nup 1\n\nbad line\n');
    expect(s).toEqual([
      { name: "x_total", labels: { a: "b", c: 'say "hi"' }, value: 3 },
      { name: "up", labels: {}, value: 1 },
    ]);
  });

  it("sums players over a zone's map servers, lags from the lowest applied epoch, shows the worst tick budget", () => {
    const rows = topRows(
      [
        zone("prt-fild08", {
          mode: "P2P",
          appliedEpoch: 6,
          p2pPeers: { connected: 4, meshes: 1, relayed: 1 },
        }),
        zone("prontera", { mode: "Server", appliedEpoch: 7 }),
      ],
      [
        {
          namespace: "demo",
          zone: "prt-fild08",
          pod: "a",
          samples: parseMetrics(exposition(7, { f1: 3, f2: 1 }, 0.25)),
        },
        {
          namespace: "demo",
          zone: "prt-fild08",
          pod: "b",
          samples: parseMetrics(exposition(6, { f3: 2 }, 0.5)),
        },
        { namespace: "demo", zone: "prontera", pod: "c", error: "connection refused" },
      ],
      parseMetrics('hybridp2p_flags_published_epoch{namespace="demo",region="demo"} 7\n'),
    );
    expect(rows).toEqual([
      {
        namespace: "demo",
        zone: "prontera",
        region: "demo",
        mode: "Server",
        players: null,
        peers: null,
        relayed: null,
        epochLag: 0,
        tickBudget: null,
        scraped: { ok: 0, pods: 1 },
      },
      {
        namespace: "demo",
        zone: "prt-fild08",
        region: "demo",
        mode: "P2P",
        players: 6,
        peers: 4,
        relayed: 1,
        epochLag: 1,
        tickBudget: 0.5,
        scraped: { ok: 2, pods: 2 },
      },
    ]);
    const text = formatTop(rows, ["demo/c: metrics not read"]);
    expect(text.split("\n")[0]).toMatch(
      /^NAMESPACE\s+ZONE\s+MODE\s+PLAYERS\s+PEERS\s+RELAYED\s+EPOCH-LAG\s+TICK-BUDGET\s+PODS$/,
    );
    expect(text).toMatch(/demo\s+prt-fild08\s+P2P\s+6\s+4\s+1\s+1\s+50%\s+2\/2/);
    expect(text).toMatch(/demo\s+prontera\s+Server\s+-\s+-\s+-\s+0\s+-\s+0\/1/);
    expect(text).toContain("! demo/c: metrics not read");
  });

  it("leaves the lag unknown without the operator's published epoch", () => {
    const [row] = topRows([zone("prontera", { mode: "Server", appliedEpoch: 7 })], [], []);
    expect(row!.epochLag).toBeNull();
  });
});
