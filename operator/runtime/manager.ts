// Moved to platform/kube/manager.ts (the orchestrator workload runs on the same runtime); kept so
// imports from operator/ keep working.
export * from "../../platform/kube/manager.ts";
