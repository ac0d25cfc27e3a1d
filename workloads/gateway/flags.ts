// The gateway and the flag plane: which zone serves a map comes from the published zone
// documents, and the gateway's own P2P flags gate what map servers report.

import type { FlagClient, FlagSnapshot } from "../../platform/flags/client.ts";
import type { Mode } from "../../platform/protocol/messages.ts";
import type { MapDirectory } from "./routing.ts";

export function flagDirectory(flags: FlagClient): MapDirectory {
  let seen: FlagSnapshot | undefined;
  let byMap = new Map<string, string>();
  return {
    zoneOf(map) {
      const snap = flags.snapshot();
      if (snap !== seen) {
        seen = snap;
        byMap = new Map();
        for (const [zone, doc] of snap.zones) for (const m of doc.maps) byMap.set(m.name, zone);
      }
      return byMap.get(map);
    },
  };
}

/** The gateway's own flags for a zone: P2P allowed, off, or held in fallback (flags or latches). */
export function flagGate(flags: FlagClient): (zone: string) => Mode {
  return (zone) => flags.zoneMode(zone).mode;
}
