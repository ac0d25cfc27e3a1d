// Moved to platform/kube/kube.ts (the orchestrator workload runs on the same runtime); kept so
// imports from operator/ keep working.
export * from "../../platform/kube/kube.ts";
