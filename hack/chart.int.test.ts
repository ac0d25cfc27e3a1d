// The chart against a real kube-apiserver: its CRDs pass server-side validation, it installs,
// and the operator's ServiceAccount may do what the operator needs and nothing more (checked
// by the apiserver's own RBAC authorizer). Also runs the Argo CD health check from the chart's
// docs in a real Lua 5.1 interpreter (Redis' EVAL; Argo CD's gopher-lua is Lua 5.1 too).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AuthorizationV1Api, KubeConfig } from "@kubernetes/client-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { redisOptions } from "../platform/stores/access.ts";
import { binDir } from "../testkit/local/services.ts";
import { STATUS_CASES } from "../testkit/status-fixtures.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const chart = join(repoRoot, "charts/hybrid-p2p");
const env = inject("localEnv");
const NS = "chart-int";
const RELEASE = "chart-int";
const SA = `system:serviceaccount:${NS}:${RELEASE}-hybrid-p2p`;
const kc = new KubeConfig();
kc.loadFromFile(env.kubeconfig!);
const authz = kc.makeApiClient(AuthorizationV1Api);

function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(join(binDir(), cmd), [...args, "--kubeconfig", env.kubeconfig!], {
    encoding: "utf8",
    input,
    stdio: ["pipe", "pipe", "pipe"],
  });
}

/** Asks the apiserver's authorizer (a SubjectAccessReview) whether the operator's ServiceAccount
 * may do this; "group/resource" as kubectl writes it, "/sub" for a subresource. */
async function canI(verb: string, resource: string, namespace: string): Promise<boolean> {
  const [res, subresource] = resource.split("/");
  const [plural, ...group] = res!.split(".");
  const review = await authz.createSubjectAccessReview({
    body: {
      apiVersion: "authorization.k8s.io/v1",
      kind: "SubjectAccessReview",
      spec: {
        user: SA,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${NS}`, "system:authenticated"],
        resourceAttributes: { verb, group: group.join("."), resource: plural, subresource, namespace },
      },
    },
  });
  return review.status?.allowed === true;
}

describe("the chart on a real kube-apiserver", () => {
  beforeAll(() => {
    // crds.install=false: other test files share this apiserver and may own the CRDs already.
    run("helm", [
      "install",
      RELEASE,
      chart,
      "-n",
      NS,
      "--create-namespace",
      "--set",
      "crds.install=false",
      "--set",
      "replicas=2",
    ]);
  });
  afterAll(() => {
    run("helm", ["uninstall", RELEASE, "-n", NS]);
  });

  it("renders CRDs the apiserver accepts (server-side dry run)", () => {
    const crds = run("helm", ["template", RELEASE, chart, "--show-only", "templates/crds.yaml"]);
    const out = run(
      "kubectl",
      ["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"],
      crds,
    );
    expect(out).toMatch(/regions\.hybridp2p\.io .*serverside-applied/);
    expect(out).toMatch(/zones\.hybridp2p\.io/);
    expect(out).toMatch(/p2ppolicies\.hybridp2p\.io/);
  });

  it("installs the operator's Deployment, Service and RBAC", () => {
    expect(run("helm", ["status", RELEASE, "-n", NS])).toContain("STATUS: deployed");
    const dep = JSON.parse(
      run("kubectl", ["get", "deployment", `${RELEASE}-hybrid-p2p`, "-n", NS, "-o", "json"]),
    );
    expect(dep.spec.replicas).toBe(2);
    run("kubectl", ["get", "service", `${RELEASE}-hybrid-p2p-metrics`, "-n", NS]);
  });

  it("lets the operator's ServiceAccount do what the operator needs, in any namespace", async () => {
    for (const ns of ["demo", "another-region"]) {
      for (const verb of ["get", "list", "watch", "create", "update", "patch", "delete"]) {
        for (const r of [
          "deployments.apps",
          "statefulsets.apps",
          "services",
          "configmaps",
          "serviceaccounts",
        ]) {
          expect(await canI(verb, r, ns), `${verb} ${r} in ${ns}`).toBe(true);
        }
        for (const r of ["poddisruptionbudgets.policy", "networkpolicies.networking.k8s.io"]) {
          expect(await canI(verb, r, ns), `${verb} ${r}`).toBe(true);
        }
      }
      for (const r of ["regions.hybridp2p.io", "zones.hybridp2p.io", "p2ppolicies.hybridp2p.io"]) {
        expect(await canI("watch", r, ns)).toBe(true);
        expect(await canI("patch", `${r}/status`, ns)).toBe(true);
      }
      expect(await canI("get", "secrets", ns)).toBe(true);
      expect(await canI("create", "secrets", ns)).toBe(true);
      expect(await canI("list", "pods", ns)).toBe(true);
      expect(await canI("create", "events", ns)).toBe(true);
    }
    expect(await canI("update", "leases.coordination.k8s.io", NS)).toBe(true);
  });

  it("denies the ServiceAccount everything else", async () => {
    const denied: [string, string, string][] = [
      // Secrets by name only (get, create): never enumerated, changed or removed.
      ["list", "secrets", "demo"],
      ["watch", "secrets", "demo"],
      ["list", "secrets", ""],
      ["update", "secrets", "demo"],
      ["patch", "secrets", "demo"],
      ["delete", "secrets", "demo"],
      ["delete", "pods", "demo"],
      ["create", "pods/exec", "demo"],
      ["update", "leases.coordination.k8s.io", "demo"],
      ["create", "regions.hybridp2p.io", "demo"],
      ["delete", "zones.hybridp2p.io", "demo"],
      ["create", "clusterroles.rbac.authorization.k8s.io", ""],
      ["create", "rolebindings.rbac.authorization.k8s.io", "demo"],
      ["update", "customresourcedefinitions.apiextensions.k8s.io", ""],
      ["get", "nodes", ""],
      ["create", "namespaces", ""],
    ];
    for (const [verb, r, ns] of denied)
      expect(await canI(verb, r, ns), `${verb} ${r} in '${ns}'`).toBe(false);
  });
});

describe("the Argo CD health check in the chart's docs", () => {
  const doc = readFileSync(join(chart, "docs/argocd-health.md"), "utf8");
  const lua = /```lua\n([\s\S]*?)```/.exec(doc)?.[1];
  let redis: Redis;
  beforeAll(() => {
    redis = new Redis(redisOptions(env.redis!));
  });
  afterAll(() => redis.disconnect());

  // Argo CD runs the script with the object in the global `obj` and reads the returned table.
  const health = async (obj: unknown) => {
    const script = `local obj = cjson.decode(ARGV[1])\nlocal function check()\n${lua}\nend\nreturn cjson.encode(check())`;
    return JSON.parse(String(await redis.eval(script, 0, JSON.stringify(obj)))) as {
      status: string;
      message: string;
    };
  };

  it("is in the docs", () => {
    expect(lua).toContain("hs.status");
  });

  for (const c of STATUS_CASES) {
    it(`${c.name}: ${c.argo}`, async () => {
      expect((await health(c.obj)).status).toBe(c.argo);
    });
  }

  it("passes the condition's reason and message on", async () => {
    const stalled = STATUS_CASES.find((c) => c.name === "Region stalled")!;
    expect(await health(stalled.obj)).toEqual({
      status: "Degraded",
      message: 'SecretNotFound: Secret "pg" (postgres)',
    });
  });
});
