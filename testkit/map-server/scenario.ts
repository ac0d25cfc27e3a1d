// A scripted play session (players move, chat and fight mobs) that must end in the same world in
// server mode and in P2P mode. The clients decide only from what their AOI frames show, so if
// the worlds stay equal their decisions stay equal. In P2P mode the P2P clients walk by
// themselves with the server's own walking rule and report each position; legacy clients always
// send `move`. Used by the unit test (inline ticks) and the integration test (over NATS).
import type {
  AoiFrame,
  ClientInput,
  EntityState,
  MapMode,
  SessionView,
} from "../../platform/bus/contract.ts";
import { type MapDef, openMap } from "../../workloads/map-server/sim/maps.ts";
import { walkStep } from "../../workloads/map-server/sim/step.ts";
import { PLAYER_CELLS_PER_SECOND, type PlayerInfo } from "../../workloads/map-server/sim/world.ts";

export const SCENARIO_TICKS = 400;
export const SCENARIO_SEED = 7;

export function scenarioMap(): MapDef {
  const walls: Array<[number, number]> = [];
  for (let y = 10; y < 20; y++) walls.push([40, y]);
  return openMap("scenario", 64, 64, {
    walls,
    spawn: [30, 30],
    mobs: [
      {
        type: 0,
        count: 4,
        at: [
          [34, 30],
          [26, 33],
          [31, 25],
          [36, 36],
        ],
      },
      {
        type: 1,
        count: 2,
        at: [
          [24, 24],
          [38, 28],
        ],
      },
    ],
  });
}

export function scenarioPlayers(): PlayerInfo[] {
  const base = { hp: 400, maxHp: 400, atk: 12, exp: 0, zeny: 0 };
  return [
    {
      ...base,
      session: "s1",
      characterId: "101",
      gateway: "gw-a",
      p2p: true,
      name: "Alice",
      x: 30.5,
      y: 30.5,
    },
    {
      ...base,
      session: "s2",
      characterId: "102",
      gateway: "gw-a",
      p2p: true,
      name: "Bobby",
      x: 29.5,
      y: 31.5,
    },
    {
      ...base,
      session: "s3",
      characterId: "103",
      gateway: "gw-b",
      p2p: false,
      name: "Carol",
      x: 31.5,
      y: 29.5,
    },
  ];
}

const WAYPOINTS: Array<[number, number]> = [
  [36, 30],
  [36, 36],
  [28, 36],
  [28, 28],
];

export class ScenarioClient {
  readonly info: PlayerInfo;
  entity = -1;
  private readonly known = new Map<number, EntityState>();
  private seq = 0;
  private target = -1;
  /** P2P walking done by the client itself. */
  private pos: [number, number] = [0, 0];
  private walkTo: [number, number] | undefined;
  private readonly step: number;
  corrections = 0;

  constructor(info: PlayerInfo, tickHz: number) {
    this.info = info;
    this.step = PLAYER_CELLS_PER_SECOND / tickHz;
  }

  joined(entity: number, x: number, y: number): void {
    this.entity = entity;
    this.pos = [x, y];
  }

  observe(frame: AoiFrame, view: SessionView): void {
    for (const idx of [...view.enter, ...view.update]) {
      const e = frame.ents[idx]!;
      this.known.set(e.id, e);
    }
    for (const id of view.leave) this.known.delete(id);
    this.corrections += view.corrections?.length ?? 0;
  }

  /** This client's inputs for `tick` in a map in `mode`. */
  inputs(tick: number, mode: MapMode): ClientInput[] {
    const s = this.info.session;
    const out: ClientInput[] = [];
    const selfWalks = mode === "p2p" && this.info.p2p;
    const move = (x: number, y: number) => {
      if (selfWalks) this.walkTo = [x + 0.5, y + 0.5];
      else out.push({ s, seq: ++this.seq, k: "move", x, y });
    };
    const me = this.known.get(this.entity);
    if (tick === 5 || tick === 200)
      out.push({ s, seq: ++this.seq, k: "chat", text: `hello from ${this.info.name} at ${tick}` });
    if (me && this.info.session === "s3") {
      if (tick % 60 === 10) {
        const [x, y] = WAYPOINTS[Math.floor(tick / 60) % WAYPOINTS.length]!;
        move(x, y);
      }
    } else if (me && tick % 10 === (this.info.session === "s1" ? 3 : 7)) {
      let foe = this.known.get(this.target);
      if (!foe?.alive || foe.kind !== "mob") {
        this.target = -1;
        let best = Number.POSITIVE_INFINITY;
        for (const e of [...this.known.values()].sort((p, q) => p.id - q.id)) {
          if (e.kind !== "mob" || !e.alive) continue;
          const d = Math.max(Math.abs(e.x - me.x), Math.abs(e.y - me.y));
          if (d < best) {
            best = d;
            this.target = e.id;
          }
        }
        foe = this.known.get(this.target);
      }
      if (foe) {
        if (Math.max(Math.abs(foe.x - me.x), Math.abs(foe.y - me.y)) > 1.2)
          move(Math.floor(foe.x), Math.floor(foe.y));
        out.push({ s, seq: ++this.seq, k: "attack", target: foe.id });
      }
    }
    if (selfWalks && this.walkTo) {
      const [nx, ny, arrived] = walkStep(this.pos[0], this.pos[1], this.walkTo[0], this.walkTo[1], this.step);
      this.pos = [nx, ny];
      if (arrived) this.walkTo = undefined;
      out.push({ s, seq: ++this.seq, k: "pos", x: nx, y: ny });
    }
    return out;
  }
}
