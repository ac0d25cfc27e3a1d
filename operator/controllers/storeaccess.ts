// How the operator itself reaches a Region's flag store (etcd) and report channel (NATS): with
// its own identity on a managed store (the etcd client certificate <region>-etcd-operator-tls,
// the NATS user hybridp2p-operator), or with the credentials and TLS material an external
// store's Secrets hold (the same ones the Region's pods get), else the operator's environment.
// Read from the API by name.

import { requireStoreAccess, type StoreAccess } from "../../platform/stores/access.ts";
import { materialise } from "../../platform/stores/files.ts";
import { GENERATED_SECRET } from "../../platform/stores/generated.ts";
import { natsUserName } from "../../platform/stores/roles.ts";
import type { Region } from "../api/index.ts";
import { ETCD_OPERATOR_ROLE } from "../render/constants.ts";
import { isExternal, storeSpec } from "../render/stores.ts";
import type { SecretReader } from "./secrets.ts";

async function need(reader: SecretReader, ns: string, name: string): Promise<Record<string, string>> {
  const data = await reader.get(ns, name);
  if (!data) throw new Error(`Secret "${name}" not found in namespace "${ns}"`);
  return data;
}

/** The operator's access to a Region's etcd or NATS at `url`. */
export async function operatorStoreAccess(
  reader: SecretReader,
  region: Region,
  store: "etcd" | "nats",
  url: string,
): Promise<StoreAccess> {
  const r = region.metadata!.name!;
  const ns = region.metadata!.namespace!;
  const spec = storeSpec(region, store);
  if (isExternal(spec)) {
    // What the Region names wins; what it does not comes from the operator's own environment
    // (HYBRIDP2P_<STORE>_*: e.g. one external store for every Region, its credentials mounted
    // into the operator).
    const access: StoreAccess = requireStoreAccess(store, url);
    const ref = spec.external?.secretRef;
    if (ref) {
      const data = await need(reader, ns, ref.name);
      if (ref.key) access.password = data[ref.key];
      else {
        access.username = data.username;
        access.password = data.password;
      }
    }
    const tls = spec.external?.tlsSecretRef;
    if (tls) {
      const data = await need(reader, ns, tls.name);
      const files = Object.fromEntries(
        ["ca.crt", "tls.crt", "tls.key"].filter((k) => data[k]).map((k) => [k, data[k]!]),
      );
      access.tlsDir = materialise(`${ns}.${tls.name}`, files);
    }
    return access;
  }
  if (store === "etcd") {
    const name = GENERATED_SECRET.etcdClient(r, ETCD_OPERATOR_ROLE);
    const d = await need(reader, ns, name);
    return {
      store,
      url,
      tlsDir: materialise(`${ns}.${name}`, {
        "ca.crt": d["ca.crt"]!,
        "tls.crt": d["tls.crt"]!,
        "tls.key": d["tls.key"]!,
      }),
    };
  }
  const creds = await need(reader, ns, GENERATED_SECRET.credentials(r, "nats"));
  const ca = await need(reader, ns, GENERATED_SECRET.ca(r));
  return {
    store,
    url,
    username: natsUserName("operator", r),
    password: creds.operator,
    tlsDir: materialise(`${ns}.${GENERATED_SECRET.ca(r)}`, { "ca.crt": ca["ca.crt"]! }),
  };
}
