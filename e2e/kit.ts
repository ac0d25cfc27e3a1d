// What every e2e file needs against the cluster its kubeconfig names; shared with the chaos
// scenarios that run on the same cluster, so it lives in testkit/cluster.ts.
export * from "../testkit/cluster.ts";
