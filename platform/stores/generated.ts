// Names of the Secrets the operator generates for a Region (operator/render/secrets.ts plans
// them; docs/security.md lists what each holds). Here, under both sides, because processes
// other than the Region's pods read some of them by name: the operator's flag plane and the
// chart's orchestrator (its NATS user on each managed NATS).
export const GENERATED_SECRET = {
  ca: (region: string) => `${region}-ca`,
  serving: (region: string) => `${region}-serving-tls`,
  storeServer: (region: string, store: string) => `${region}-${store}-server-tls`,
  /** etcd client certificates: `role` is "root", "operator" or a component using etcd. */
  etcdClient: (region: string, role: string) => `${region}-etcd-${role}-tls`,
  credentials: (region: string, store: string) => `${region}-${store}-credentials`,
} as const;
