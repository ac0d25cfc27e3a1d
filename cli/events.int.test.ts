// hybridctl events against the real API server: create (validated by the apiserver's CEL rules),
// list and describe with the state per Region (the status as the orchestrator writes it), cancel.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { KubeClient } from "../platform/kube/kube.ts";
import { createNamespace, deleteNamespace, installCrds, testClient } from "../testkit/kube.ts";
import type { Io } from "./common.ts";
import { run } from "./hybridctl.ts";

const env = inject("localEnv");

describe("hybridctl events", () => {
  const ns = `ev-${randomUUID().slice(0, 8)}`;
  let kube: KubeClient;
  const ctl = async (...args: string[]) => {
    const out: string[] = [];
    const io: Io = { out: (s) => out.push(s), err: (s) => out.push(s) };
    const code = await run([...args, "--kubeconfig", env.kubeconfig!], io);
    return { code, out: out.join("\n") };
  };

  beforeAll(async () => {
    kube = await testClient(env.kubeconfig!);
    await installCrds(kube);
    await createNamespace(kube, ns);
  });
  afterAll(async () => {
    await deleteNamespace(kube, ns);
  });

  it("creates, lists, describes and cancels a WorldEvent", async () => {
    const created = await ctl(
      ...["events", "create", "osiris", "-n", ns, "--type", "Boss", "--mob", "osiris", "--map", "prt_fild08"],
      ...["--message", "Osiris rises!", "--region", "eu/eu", "--region", "us/us", "--duration", "10m"],
    );
    expect(created).toEqual({ code: 0, out: "worldevent.hybridp2p.io/osiris created" });
    // The apiserver's rules speak through the CLI.
    const refused = await ctl("events", "create", "bad", "-n", ns, "--type", "Boss", "--mob", "osiris");
    expect(refused.code).toBe(1);
    expect(refused.out).toContain("Boss and Invasion events need targets.maps");

    // The status as the orchestrator writes it.
    await kube.request("PATCH", `/apis/hybridp2p.io/v1alpha1/namespaces/${ns}/worldevents/osiris/status`, {
      body: {
        status: {
          phase: "Active",
          targetRegions: 2,
          activeRegions: 1,
          regions: [
            {
              namespace: "eu",
              name: "eu",
              state: "Active",
              reason: "Delivered",
              maps: 1,
              spawned: 1,
              alive: 1,
            },
            { namespace: "us", name: "us", state: "Failed", reason: "BusUnreachable", message: "no route" },
          ],
        },
      },
      contentType: "application/merge-patch+json",
    });
    const list = await ctl("events", "list", "-n", ns);
    expect(list.code).toBe(0);
    expect(list.out).toMatch(
      /osiris\s+Boss\s+Active\s+1\/2\s+-\s+eu\/eu=Active us\/us=Failed\(BusUnreachable\)/,
    );
    const described = await ctl("events", "describe", "osiris", "-n", ns);
    expect(described.out).toContain("Type:         Boss (boss osiris x1)");
    expect(described.out).toMatch(/us\/us\s+Failed\s+BusUnreachable/);
    const json = JSON.parse((await ctl("events", "list", "-n", ns, "-o", "json")).out);
    expect(json[0]).toMatchObject({ name: "osiris", phase: "Active", activeRegions: 1, targetRegions: 2 });

    expect(await ctl("events", "cancel", "osiris", "-n", ns)).toEqual({
      code: 0,
      out: "worldevent.hybridp2p.io/osiris cancelled",
    });
    const after = JSON.parse((await ctl("events", "describe", "osiris", "-n", ns, "-o", "json")).out);
    expect(after.cancelled).toBe(true);
    expect((await ctl("events", "cancel", "nope", "-n", ns)).out).toContain('"nope" not found');
  });
});
