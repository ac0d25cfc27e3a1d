// The coordinator's question to the gateways: where does this session play now? A character
// token names the map the player logged in on; after a warp only the gateway knows the map, so
// the coordinator asks before meshing a peer (bus.ts, `locate`).
import type { NatsConnection } from "@nats-io/transport-node";
import { decode, encode } from "../../platform/bus/contract.ts";
import { coordSubjects, type LocateReply, type LocateRequest } from "./bus.ts";

/** Asks the region's gateways; undefined when none holds the session (or none answers in time). */
export function locateOverNats(
  nc: NatsConnection,
  region: string,
  timeoutMs = 1000,
): (session: string) => Promise<LocateReply | undefined> {
  const subject = coordSubjects.locate(region);
  return async (session) => {
    try {
      const reply = await nc.request(subject, encode({ v: 1, session } satisfies LocateRequest), {
        timeout: timeoutMs,
      });
      return decode<LocateReply>(reply.data);
    } catch {
      return undefined; // no gateway holds it: every one stays silent until the timeout
    }
  };
}
