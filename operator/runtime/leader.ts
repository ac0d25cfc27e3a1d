// Moved to platform/kube/leader.ts (the orchestrator workload runs on the same runtime); kept so
// imports from operator/ keep working.
export * from "../../platform/kube/leader.ts";
