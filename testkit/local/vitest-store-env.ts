// Runs in every integration test worker: workloads and the operator started in-process read their
// store credentials and TLS directories from the environment, as pods do (HYBRIDP2P_<STORE>_USERNAME,
// _PASSWORD, _TLS_DIR; platform/stores/access.ts). Addresses stay explicit in each test.
import { inject } from "vitest";
import { storeCredentialEnv } from "./services.ts";

for (const [k, v] of Object.entries(storeCredentialEnv(inject("localEnv")))) process.env[k] ??= v;
