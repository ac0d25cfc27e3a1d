// The Helm chart, rendered with the pinned helm: lint, the CRDs in sync with crds/, least-
// privilege RBAC without wildcards that still covers every kind the operator writes, the
// operator Deployment's settings, and values.schema.json rejecting what would not work.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { P2P_POLICY, REGION, WORLD_EVENT, ZONE } from "../operator/api/constants.ts";
import { CHILD_RESOURCES } from "../operator/controllers/operator.ts";
import { OPERATOR_NODE_FLAGS } from "../operator/main.ts";
import { OPERATOR_NAME } from "../operator/render/constants.ts";
import { binDir } from "../testkit/local/services.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const chart = join(repoRoot, "charts/hybrid-p2p");
const helm = join(binDir(), "helm");
// Rendered without --kube-version, as a user would: the pinned helm carries its Kubernetes
// version (hack/build-binaries.sh stamps it), and the chart requires >= 1.30.

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [key: string]: unknown;
}
interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

function template(...set: string[]): K8sObject[] {
  const args = ["template", "hp", chart, "--namespace", "hybrid-system"];
  for (const s of set) args.push("--set", s);
  const out = execFileSync(helm, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

function templateError(...set: string[]): string {
  try {
    template(...set);
  } catch (err) {
    return String((err as { stderr?: string }).stderr ?? err);
  }
  throw new Error(`helm template accepted ${set.join(" ")}`);
}

const roles = (objs: K8sObject[]) => objs.filter((o) => o.kind === "Role" || o.kind === "ClusterRole");
const rulesOf = (objs: K8sObject[]) => roles(objs).flatMap((r) => r.rules as Rule[]);

/** The verbs all rules of these roles grant on group/resource. */
function granted(objs: K8sObject[], group: string, resource: string): Set<string> {
  const verbs = new Set<string>();
  for (const r of rulesOf(objs)) {
    if (r.apiGroups?.includes(group) && r.resources?.includes(resource))
      for (const v of r.verbs) verbs.add(v);
  }
  return verbs;
}

const groupOf = (apiVersion: string) => (apiVersion.includes("/") ? apiVersion.split("/")[0]! : "");
interface Container {
  image: string;
  args: string[];
  env: unknown[];
  ports: unknown[];
  securityContext: unknown;
  readinessProbe: { httpGet: unknown };
}
interface Deployment extends K8sObject {
  spec: {
    replicas: number;
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        containers: Container[];
        securityContext: { runAsNonRoot?: boolean };
        affinity?: { podAntiAffinity?: unknown };
      };
    };
  };
}
const deploymentOf = (objs: K8sObject[], name = OPERATOR_NAME) =>
  objs.find(
    (o) =>
      o.kind === "Deployment" &&
      (o as Deployment).spec.template.metadata.labels["app.kubernetes.io/name"] === name,
  ) as Deployment;

describe("the hybrid-p2p chart", () => {
  it("passes helm lint --strict", () => {
    const out = execFileSync(helm, ["lint", chart, "--strict"], { encoding: "utf8" });
    expect(out).toContain("0 chart(s) failed");
  });

  it("ships exactly the CRDs in crds/ (files/crds links to each: ln -s ../../../../crds/NAME charts/hybrid-p2p/files/crds/)", () => {
    const names = readdirSync(join(repoRoot, "crds")).filter((f) => f.endsWith(".yaml"));
    expect(readdirSync(join(chart, "files/crds")).sort()).toEqual(names.sort());
    // Links, not copies: the generated CRDs are the one source, and helm follows the links
    // (also when packaging), so the chart cannot drift from crds/.
    for (const f of names) {
      expect(realpathSync(join(chart, "files/crds", f)), f).toBe(realpathSync(join(repoRoot, "crds", f)));
    }
    // Rendering through fromYaml/toYaml must not change them; it only adds the keep policy.
    const rendered = template().filter((o) => o.kind === "CustomResourceDefinition");
    expect(rendered).toHaveLength(names.length);
    for (const f of names) {
      const want = parseYaml(readFileSync(join(repoRoot, "crds", f), "utf8")) as K8sObject;
      const got = rendered.find((o) => o.metadata.name === want.metadata.name)!;
      expect(got.metadata.annotations?.["helm.sh/resource-policy"]).toBe("keep");
      const { annotations: _, ...gotMeta } = got.metadata;
      expect({ ...got, metadata: gotMeta }).toEqual(want);
    }
    expect(template("crds.install=false").some((o) => o.kind === "CustomResourceDefinition")).toBe(false);
  });

  it("grants no wildcard in any role, in every configuration", () => {
    for (const set of [[], ["watchNamespace=demo"], ["replicas=2"], ["leaderElection.enabled=false"]]) {
      const rules = rulesOf(template(...set));
      expect(rules.length).toBeGreaterThan(0);
      for (const r of rules) {
        for (const field of [r.apiGroups, r.resources, r.verbs, r.resourceNames, r.nonResourceURLs]) {
          expect(field ?? [], JSON.stringify(r)).not.toContain("*");
          for (const v of field ?? []) expect(v, JSON.stringify(r)).not.toMatch(/\*/);
        }
      }
    }
  });

  it("grants what the operator does and no more", () => {
    const objs = template();
    const write = ["get", "list", "watch", "create", "update", "patch", "delete"];
    // Every kind the operator renders (operator/controllers/operator.ts): full control.
    for (const rt of CHILD_RESOURCES) {
      expect([...granted(objs, groupOf(rt.apiVersion), rt.plural)].sort(), rt.plural).toEqual(
        [...write].sort(),
      );
    }
    for (const k of [REGION, ZONE, P2P_POLICY]) {
      expect(granted(objs, "hybridp2p.io", k.plural)).toEqual(
        new Set(["get", "list", "watch", "update", "patch"]),
      );
      expect(granted(objs, "hybridp2p.io", `${k.plural}/status`)).toEqual(
        new Set(["get", "update", "patch"]),
      );
    }
    // By name only: never list or watch (no label scoping exists for them), never update or delete.
    expect(granted(objs, "", "secrets")).toEqual(new Set(["get", "create"]));
    expect(granted(objs, "", "pods")).toEqual(new Set(["get", "list", "watch"]));
    expect(granted(objs, "", "events")).toEqual(new Set(["create", "patch"]));
    expect(granted(objs, "coordination.k8s.io", "leases")).toEqual(
      new Set(["get", "list", "watch", "create", "update", "patch"]),
    );
    // Nothing outside that list: no nodes, namespaces, RBAC, CRDs, exec.
    const known = new Set([
      ...CHILD_RESOURCES.map((rt) => rt.plural),
      ...[REGION, ZONE, P2P_POLICY].flatMap((k) => [
        k.plural,
        `${k.plural}/status`,
        `${k.plural}/finalizers`,
      ]),
      // The orchestrator's: it reads WorldEvents, Regions and Zones and writes WorldEvent status.
      WORLD_EVENT.plural,
      `${WORLD_EVENT.plural}/status`,
      "secrets",
      "pods",
      "events",
      "leases",
    ]);
    for (const r of rulesOf(objs)) for (const res of r.resources ?? []) expect(known, res).toContain(res);
    // The leader Lease only in the release namespace.
    const leaseRole = roles(objs).find((r) => granted([r], "coordination.k8s.io", "leases").size > 0)!;
    expect(leaseRole.kind).toBe("Role");
    expect(leaseRole.metadata.namespace).toBe("hybrid-system");
  });

  it("narrows to a Role when watching one namespace", () => {
    const objs = template("watchNamespace=demo");
    expect(objs.some((o) => o.kind.startsWith("Cluster"))).toBe(false);
    const main = roles(objs).find((r) => granted([r], "apps", "deployments").size > 0)!;
    expect(main.metadata.namespace).toBe("demo");
    expect(deploymentOf(objs).spec.template.spec.containers[0]!.args).toContain("--namespace=demo");
  });

  it("runs the operator with leader election, non-root, its Node flags and a metrics Service", () => {
    const objs = template();
    const dep = deploymentOf(objs);
    const pod = dep.spec.template.spec;
    const c = pod.containers[0]!;
    expect(dep.spec.template.metadata.labels["app.kubernetes.io/name"]).toBe(OPERATOR_NAME);
    expect(c.image).toBe("ghcr.io/hybrid-p2p/operator:0.1.0");
    expect(c.args).toEqual(
      expect.arrayContaining(["run", "--leader-elect", "--leader-election-namespace=hybrid-system"]),
    );
    expect(c.env).toContainEqual({ name: "NODE_OPTIONS", value: OPERATOR_NODE_FLAGS.join(" ") });
    expect(c.env).toContainEqual({
      name: "POD_NAMESPACE",
      valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } },
    });
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
    });
    expect(c.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "health" });
    const svc = objs.find((o) => o.kind === "Service") as K8sObject & {
      spec: { ports: unknown[]; selector: Record<string, string> };
    };
    expect(svc.spec.ports).toEqual([{ name: "metrics", port: 9090, targetPort: "metrics", protocol: "TCP" }]);
    expect(svc.spec.selector).toEqual(pickSelector(dep));
    expect(c.ports).toContainEqual({ name: "metrics", containerPort: 9090, protocol: "TCP" });
    expect(objs.some((o) => o.kind === "PodDisruptionBudget")).toBe(false);
  });

  it("runs two replicas as leader and standby, spread and protected by a PodDisruptionBudget", () => {
    const objs = template("replicas=2");
    const dep = deploymentOf(objs);
    expect(dep.spec.replicas).toBe(2);
    expect(dep.spec.template.spec.affinity?.podAntiAffinity).toBeDefined();
    expect(objs.find((o) => o.kind === "PodDisruptionBudget")).toMatchObject({
      spec: { maxUnavailable: 1, unhealthyPodEvictionPolicy: "AlwaysAllow" },
    });
  });

  it("runs the world-event orchestrator from the workload image, leader-elected, with least privilege", () => {
    const objs = template();
    const dep = deploymentOf(objs, "hybrid-orchestrator");
    const c = dep.spec.template.spec.containers[0]!;
    expect(dep.spec.replicas).toBe(2);
    expect(c.image).toBe("ghcr.io/hybrid-p2p/workload:0.1.0");
    expect(c.args).toEqual(["orchestrator"]);
    expect(c.env).toContainEqual({ name: "HYBRIDP2P_LEASE_DURATION", value: "15s" });
    expect(dep.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    expect(dep.spec.template.spec.affinity?.podAntiAffinity).toBeDefined();
    const mine = roles(objs).filter((r) => r.metadata.name.includes("orchestrator"));
    expect(granted(mine, "hybridp2p.io", WORLD_EVENT.plural)).toEqual(new Set(["get", "list", "watch"]));
    expect(granted(mine, "hybridp2p.io", `${WORLD_EVENT.plural}/status`)).toEqual(
      new Set(["get", "update", "patch"]),
    );
    for (const k of [REGION, ZONE])
      expect(granted(mine, "hybridp2p.io", k.plural)).toEqual(new Set(["get", "list", "watch"]));
    expect(granted(mine, "apps", "deployments").size).toBe(0);
    // Secrets by name only (each Region's NATS user and CA): get, never list or watch.
    expect(granted(mine, "", "secrets")).toEqual(new Set(["get"]));
    const lease = mine.find((r) => granted([r], "coordination.k8s.io", "leases").size > 0)!;
    expect(lease).toMatchObject({ kind: "Role", metadata: { namespace: "hybrid-system" } });
    const sa = dep.spec.template.spec as unknown as { serviceAccountName: string };
    expect(sa.serviceAccountName).toBe("hp-hybrid-p2p-orchestrator");
    expect(template("orchestrator.enabled=false").some((o) => o.metadata.name.includes("orchestrator"))).toBe(
      false,
    );
  });

  it("rejects values that would not work (values.schema.json)", () => {
    expect(templateError("orchestrator.natsUrl=nats-0:4222")).toMatch(/natsUrl/);
    expect(templateError("replicas=2", "leaderElection.enabled=false")).toMatch(/leaderElection\/enabled/);
    expect(templateError("replica=2")).toMatch(/replica/);
    expect(templateError("flags.etcdEndpoints=etcd:2379")).toMatch(/etcdEndpoints/);
    expect(templateError("logLevel=verbose")).toMatch(/logLevel/);
  });
});

function pickSelector(dep: Deployment) {
  const l = dep.spec.template.metadata.labels;
  return {
    "app.kubernetes.io/name": l["app.kubernetes.io/name"],
    "app.kubernetes.io/instance": l["app.kubernetes.io/instance"],
  };
}
