// Children the operator no longer renders are deleted (owner references only collect children
// when the owner itself goes): a Region that turns its RO endpoints off loses their Services,
// with a Pruned Event; what the Region does not control is left alone.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type KubeClient, resources } from "../../platform/kube/kube.ts";
import type { Manager } from "../../platform/kube/manager.ts";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { silentLogger } from "../../platform/log.ts";
import { createNamespace, deleteNamespace, installCrds, testClient, waitFor } from "../../testkit/kube.ts";
import { API_VERSION } from "../api/index.ts";
import { startOperator } from "../main.ts";
import { LABEL, MANAGED_BY } from "../render/constants.ts";
import { regionResource } from "./context.ts";

const env = inject("localEnv");
const ns = "op-prune";
let client: KubeClient;
let mgr: Manager;

const roServices = ["ro-login", "ro-char", "ro-map"].map((e) => `pr-${e}`);

const region = (roEnabled: boolean): KubeObject => ({
  apiVersion: API_VERSION,
  kind: "Region",
  metadata: { name: "pr", namespace: ns },
  spec: { ro: { enabled: roEnabled, serviceType: "ClusterIP" } },
});

const apply = (obj: KubeObject) =>
  client.request<KubeObject>("PATCH", `/apis/${API_VERSION}/namespaces/${ns}/${regionResource.plural}/pr`, {
    query: { fieldManager: "test-user", force: true },
    body: obj,
    contentType: "application/apply-patch+yaml",
  });

beforeAll(async () => {
  client = await testClient(env.kubeconfig!);
  await installCrds(client);
  await createNamespace(client, ns);
  mgr = await startOperator({
    kubeconfig: env.kubeconfig!,
    namespace: ns,
    leaderElect: false,
    metricsBindAddress: "127.0.0.1:0",
    healthProbeBindAddress: "127.0.0.1:0",
    log: silentLogger(),
    flagPlane: false,
  });
});

afterAll(async () => {
  await mgr?.stop();
  if (client) await deleteNamespace(client, ns);
  client?.close();
});

describe("children no longer rendered", () => {
  it("are deleted, with an Event, and only those the owner controls", async () => {
    // A Service carrying the operator's label but controlled by nobody: not the Region's to delete.
    await client.create({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "pr-users-own", namespace: ns, labels: { [LABEL.managedBy]: MANAGED_BY } },
      spec: { ports: [{ port: 80 }] },
    });
    await apply(region(true));
    for (const name of roServices)
      await waitFor(() => client.get(resources.service, ns, name), `Service ${name} rendered`);

    await apply(region(false));
    await waitFor(async () => {
      const left = await Promise.all(roServices.map((n) => client.get(resources.service, ns, n)));
      return left.every((s) => s === undefined) || undefined;
    }, "RO Services deleted once the Region turns RO off");

    const ev = await waitFor(async () => {
      const list = await client.list<KubeObject & { reason: string; message: string }>(resources.event, ns);
      return list.items.find((e) => e.reason === "Pruned");
    }, "a Pruned Event");
    for (const name of roServices) expect(ev.message).toContain(`Service/${name}`);
    // The gateway's own Service is still rendered, and the stranger is untouched.
    expect(await client.get(resources.service, ns, "pr-gateway")).toBeDefined();
    expect(await client.get(resources.service, ns, "pr-users-own")).toBeDefined();
  });
});
