import type { WebSocket } from "ws";

/** How long a connection being closed may take to answer the close handshake before it is cut off. */
const CLOSE_GRACE_MS = 2000;

/** For a connection whose close frame has been sent: cut it off if the handshake has not ended in time. */
export function cutOffAfterGrace(ws: WebSocket): void {
  setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
}

/**
 * On a protocol error (an oversized or malformed frame) ws has already sent the close frame with
 * its code (1009, 1002, ...). Destroying the socket at once, with the rest of the client's frame
 * unread, resets the connection, and the client may never read that code (it saw 1006 in CI): cut
 * the connection off only if the close handshake has not ended in time.
 */
export function cutOffAfterError(ws: WebSocket): void {
  ws.on("error", () => cutOffAfterGrace(ws));
}
