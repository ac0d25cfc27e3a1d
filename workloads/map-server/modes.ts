// Where a map's mode comes from: the flag client's snapshot in production, a settable value in
// tests. The map server asks before every tick and is told when anything changed.
import type { MapMode } from "../../platform/bus/contract.ts";
import type { FlagClient } from "../../platform/flags/client.ts";

export interface ModeSource {
  mode(map: string): MapMode;
  onChange(cb: () => void): void;
}

/** Fallback (the pod's own, or forced) wins; otherwise P2P where the zone and the map allow it. */
export function flagModes(flags: FlagClient): ModeSource {
  return {
    mode(map) {
      if (flags.current().mode === "fallback") return "fallback";
      return flags.mapP2P(map) ? "p2p" : "server";
    },
    onChange(cb) {
      flags.on("snapshot", () => cb());
      flags.on("state", () => cb());
    },
  };
}

export class FixedModes implements ModeSource {
  private value: MapMode;
  private readonly listeners: Array<() => void> = [];

  constructor(mode: MapMode = "server") {
    this.value = mode;
  }

  mode(): MapMode {
    return this.value;
  }

  set(mode: MapMode): void {
    this.value = mode;
    for (const cb of this.listeners) cb();
  }

  onChange(cb: () => void): void {
    this.listeners.push(cb);
  }
}
