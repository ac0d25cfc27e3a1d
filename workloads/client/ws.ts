// The SDK's sockets in Node: the `ws` package (permessage-deflate off, as the servers have it).
import { WebSocket } from "ws";
import type { Socket, SocketFactory } from "./socket.ts";

export const nodeSocket: SocketFactory = (url, timeoutMs) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    ws.binaryType = "nodebuffer";
    const sock: Socket = {
      get open() {
        return ws.readyState === WebSocket.OPEN;
      },
      get buffered() {
        return ws.bufferedAmount;
      },
      send: (data) => ws.send(data),
      close: (code, reason) => ws.close(code, reason),
      terminate: () => ws.terminate(),
    };
    ws.on("message", (data: Buffer, isBinary) => {
      if (isBinary) sock.onMessage?.(data);
    });
    ws.on("close", (code, reason) => sock.onClose?.(code, reason.toString()));
    ws.once("open", () => resolve(sock));
    ws.once("error", reject);
    ws.on("error", () => ws.terminate());
  });
