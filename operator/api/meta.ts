// Moved to platform/kube/meta.ts (shared with the workloads that talk to the API); kept so
// imports from operator/ keep working.
export * from "../../platform/kube/meta.ts";
