// The informer against a scripted fake apiserver (plain HTTP on loopback): it re-lists when the
// watch answers 410 Gone and restarts by itself after any other failure.
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterEach, describe, expect, it } from "vitest";
import { waitFor } from "../../testkit/kube.ts";
import { silentLogger } from "../log.ts";
import { Informer } from "./informer.ts";
import { KubeClient, resources } from "./kube.ts";
import type { KubeObject } from "./meta.ts";

const cm = (name: string, rv: string): KubeObject => ({
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name, namespace: "ns", resourceVersion: rv },
});

interface Script {
  list: (n: number) => { status: number; items?: KubeObject[]; rv?: string };
  watch: (n: number, rv: string, res: ServerResponse) => void;
}

let server: Server | undefined;
let informer: Informer<KubeObject> | undefined;
let client: KubeClient | undefined;
const open: ServerResponse[] = [];

afterEach(async () => {
  await informer?.stop();
  client?.close();
  for (const r of open.splice(0)) r.destroy();
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
});

async function start(script: Script): Promise<{ lists: () => number; watches: string[] }> {
  let lists = 0;
  const watches: string[] = [];
  server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.searchParams.get("watch") === "true") {
      const rv = url.searchParams.get("resourceVersion") ?? "";
      watches.push(rv);
      open.push(res);
      script.watch(watches.length, rv, res);
      return;
    }
    const r = script.list(++lists);
    res.writeHead(r.status, { "content-type": "application/json" });
    res.end(
      JSON.stringify(
        r.status === 200 ? { metadata: { resourceVersion: r.rv }, items: r.items } : { message: "boom" },
      ),
    );
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: "fake",
        server: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`,
        skipTLSVerify: true,
      },
    ],
    users: [{ name: "u" }],
    contexts: [{ name: "c", cluster: "fake", user: "u" }],
    currentContext: "c",
  });
  client = await new KubeClient(kc).init();
  informer = new Informer<KubeObject>(client, resources.configMap, { namespace: "ns", log: silentLogger() });
  return { lists: () => lists, watches };
}

const event = (res: ServerResponse, type: string, object: unknown) => {
  if (!res.headersSent) res.writeHead(200, { "content-type": "application/json" });
  res.write(`${JSON.stringify({ type, object })}\n`);
};

describe("Informer", () => {
  it("re-lists when the watch answers 410 Gone, and reports what changed meanwhile", async () => {
    const t = await start({
      list: (n) =>
        n === 1
          ? { status: 200, items: [cm("a", "5")], rv: "10" }
          : { status: 200, items: [cm("a", "5"), cm("b", "15")], rv: "20" },
      watch: (n, _rv, res) => {
        if (n === 1) {
          event(res, "ERROR", { kind: "Status", code: 410, reason: "Expired" });
          res.end();
        } else {
          event(res, "BOOKMARK", { metadata: { resourceVersion: "20" } }); // stays open
        }
      },
    });
    const added: string[] = [];
    informer!.on((type, o) => type === "add" && added.push(o.metadata.name));
    await informer!.start();
    await waitFor(() => informer!.get("ns", "b"), "b after the re-list");
    expect(t.lists()).toBe(2);
    expect(t.watches[0]).toBe("10");
    expect(t.watches[1]).toBe("20");
    expect(added).toEqual(["a", "b"]);
  });

  it("keeps retrying the initial list until it succeeds", async () => {
    const t = await start({
      list: (n) => (n < 3 ? { status: 500 } : { status: 200, items: [cm("a", "5")], rv: "10" }),
      watch: (_n, _rv, res) => event(res, "BOOKMARK", { metadata: { resourceVersion: "10" } }),
    });
    await informer!.start();
    expect(informer!.hasSynced()).toBe(true);
    expect(t.lists()).toBe(3);
    expect(informer!.get("ns", "a")).toBeDefined();
  });

  it("restarts the watch after a failure and resumes from the last resource version", async () => {
    const t = await start({
      list: () => ({ status: 200, items: [cm("a", "5")], rv: "10" }),
      watch: (n, _rv, res) => {
        if (n === 1) {
          res.writeHead(500).end(); // not a 410: ListWatch gives up, the wrapper restarts it
        } else {
          event(res, "ADDED", cm("c", "11"));
        }
      },
    });
    await informer!.start();
    await waitFor(() => informer!.get("ns", "c"), "c from the restarted watch");
    expect(t.lists()).toBe(1); // no re-list needed
    expect(t.watches.slice(0, 2)).toEqual(["10", "10"]);
  });
});
