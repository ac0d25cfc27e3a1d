// The hybridp2p.io/v1alpha1 API: constants, schemas and types.

export * from "./common.ts";
export * from "./constants.ts";
export * from "./crd.ts";
export * from "./p2ppolicy.ts";
export * from "./region.ts";
export * from "./ro.ts";
export * from "./worldevent.ts";
export * from "./zone.ts";
