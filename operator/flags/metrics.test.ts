import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { fallbackCause, registerFlagPlaneMetrics, type ZoneView } from "./metrics.ts";

const zone = (over: Partial<ZoneView> = {}): ZoneView => ({
  namespace: "demo",
  region: "demo",
  zone: "prontera",
  mode: "P2P",
  appliedEpoch: 7,
  replicas: { desired: 2, applied: 1 },
  peers: { connected: 4, meshes: 1, relayed: 1 },
  players: { eligible: 5, playing: 4 },
  ...over,
});

describe("flag plane metrics", () => {
  it("exports each zone's mode as one series per mode, peers, epochs and replicas", async () => {
    const r = new Registry();
    let zones = [zone(), zone({ zone: "field", mode: "Fallback", peers: null, players: null })];
    const m = registerFlagPlaneMetrics(r, () => ({
      zones,
      regions: [{ namespace: "demo", region: "demo", publishedEpoch: 8 }],
    }));
    m.acked(0.3);
    m.fallbackEntered({ namespace: "demo", region: "demo", zone: "field" }, "forced");
    const text = await r.metrics();
    expect(text).toContain(
      'hybridp2p_zone_mode{namespace="demo",region="demo",zone="prontera",mode="P2P"} 1',
    );
    expect(text).toContain(
      'hybridp2p_zone_mode{namespace="demo",region="demo",zone="prontera",mode="Fallback"} 0',
    );
    expect(text).toContain(
      'hybridp2p_zone_mode{namespace="demo",region="demo",zone="field",mode="Fallback"} 1',
    );
    expect(text).toContain('hybridp2p_zone_p2p_peers{namespace="demo",region="demo",zone="field"} 0');
    expect(text).toContain(
      'hybridp2p_zone_p2p_relayed_peers{namespace="demo",region="demo",zone="prontera"} 1',
    );
    expect(text).toContain(
      'hybridp2p_zone_replicas{namespace="demo",region="demo",zone="prontera",state="applied"} 1',
    );
    expect(text).toContain('hybridp2p_flags_published_epoch{namespace="demo",region="demo"} 8');
    expect(text).toContain("hybridp2p_flags_publish_to_ack_seconds_count 1");
    expect(text).toContain(
      'hybridp2p_zone_fallback_entries_total{namespace="demo",region="demo",zone="field",cause="forced"} 1',
    );
    // A zone gone is gone from the next scrape, not left at its last value.
    zones = [zone()];
    expect(await r.metrics()).not.toContain('zone="field",mode=');
  });

  it("sorts free-text fallback reasons into a few causes", () => {
    expect(fallbackCause("anything at all", true)).toBe("forced");
    expect(fallbackCause("flag store unreachable for 10s", false)).toBe("flag_store");
    expect(fallbackCause("coordinator unreachable (gateway: gw-1)", false)).toBe("coordinator");
    expect(fallbackCause("loss past max_loss 5%", false)).toBe("mesh_quality");
    expect(fallbackCause("", false)).toBe("other");
  });
});
