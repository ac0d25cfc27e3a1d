import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { freePort } from "./processes.ts";

describe("freePort", () => {
  // The kernel hands a just-closed port out again readily (22 repeats in 500 picks on this
  // machine): the local environment's services, started side by side, once got the same port.
  it("never hands out the same port twice in one process", async () => {
    const ports: number[] = [];
    for (let i = 0; i < 500; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
  });

  it("hands out a port a service can bind on loopback", async () => {
    const port = await freePort();
    const srv = createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(port, "127.0.0.1", resolve);
    });
    await new Promise((resolve) => srv.close(resolve));
  });
});
