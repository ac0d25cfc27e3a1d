// A Region's managed stores as the e2e suite reaches them (port-forwards); shared with the chaos
// scenarios on the cluster, so it lives in testkit/cluster-stores.ts.
export * from "../testkit/cluster-stores.ts";
