// Region → its children: for each of gateway, coordinator, login and char server a
// ServiceAccount, ConfigMap, Deployment, Service, PodDisruptionBudget and NetworkPolicy;
// plus a StatefulSet, Service, NetworkPolicy (and configuration) per managed data store. Pure:
// the generated Secrets are planned in secrets.ts and referenced here by name.
import type { V1DeploymentSpec } from "@kubernetes/client-node";
import { Value } from "@sinclair/typebox/value";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { type ComponentSpec, DEFAULT_WORKLOAD_IMAGE, type Region, RegionSpec } from "../api/index.ts";
import {
  child,
  containerSecurityContext,
  hashOf,
  ingressPolicy,
  type Owner,
  observabilityIngress,
  observabilityPorts,
  podDisruptionBudget,
  podIdentityEnv,
  podSecurityContext,
  resources,
  selectorLabels,
  standardLabels,
  workloadProbes,
} from "./common.ts";
import {
  AUTH_KEYSET_DIR,
  AUTH_KEYSET_SECRET_SUFFIX,
  COMPONENTS,
  CONFIG_HASH_ANNOTATION,
  DEFAULT_RESOURCES,
  ENV,
  HEALTH_PORT,
  METRICS_PORT,
  SERVING_TLS_DIR,
  SERVING_TLS_ENV,
  STORE_NAMES,
  WORKLOAD_COMMAND,
  WORKLOAD_UID,
} from "./constants.ts";
import { renderRoServices, roForComponent } from "./ro.ts";
import { servingSecretName, servingTlsEnabled } from "./secrets.ts";
import {
  isExternal,
  renderManagedStore,
  type StoreSecrets,
  type StoreWiring,
  storeSpec,
  storeWiring,
} from "./stores.ts";

type Component = (typeof COMPONENTS)[number];

/** The Region with every API default filled in (the apiserver does this too; tests and old objects may not). */
export function withRegionDefaults(region: Region): Region {
  // Every Zone of a Region renders with it: remember the result per Region object (cached
  // objects are replaced, never mutated, on update). Callers must not mutate the result.
  let out = defaulted.get(region);
  if (!out) {
    out = {
      ...region,
      spec: Value.Default(RegionSpec, structuredClone(region.spec ?? {})) as Region["spec"],
    };
    defaulted.set(region, out);
    defaulted.set(out, out);
  }
  return out;
}
const defaulted = new WeakMap<Region, Region>();

export const componentName = (region: string, c: Component): string => `${region}-${c.component}`;

export function workloadImage(region: Region): string {
  return region.spec.images?.workload ?? DEFAULT_WORKLOAD_IMAGE;
}

export function regionOwner(region: Region): Owner {
  return { apiVersion: region.apiVersion!, kind: region.kind!, metadata: region.metadata! };
}

/** The client-facing certificate (gateway, coordinator, login and char servers serve TLS from
 * it): the Region's own kubernetes.io/tls Secret or the generated one; nothing when the Region
 * turned TLS off (the workloads then serve plain ws/http). */
function servingTls(region: Region): Pick<StoreWiring, "config" | "volumes" | "volumeMounts"> {
  if (!servingTlsEnabled(region)) return { config: {}, volumes: [], volumeMounts: [] };
  return {
    config: { [SERVING_TLS_ENV]: SERVING_TLS_DIR },
    volumes: [{ name: "serving-tls", secret: { secretName: servingSecretName(region) } }],
    volumeMounts: [{ name: "serving-tls", mountPath: SERVING_TLS_DIR, readOnly: true }],
  };
}

function renderComponent(region: Region, c: Component): KubeObject[] {
  const r = region.metadata!.name!;
  const spec = (region.spec[c.key] ?? {}) as ComponentSpec;
  const name = componentName(r, c);
  const owner = regionOwner(region);
  const sel = selectorLabels(c.component, r, c.component);
  const labels = standardLabels(sel, { region: r });
  const port = spec.service?.port ?? 0;
  const stores = storeWiring(region, c.component);
  const serving = servingTls(region);
  const ro = roForComponent(region, c.key);
  const config: Record<string, string> = {
    [ENV.region]: r,
    [c.portEnv]: String(port),
    [ENV.healthPort]: String(HEALTH_PORT),
    [ENV.metricsPort]: String(METRICS_PORT),
    ...(c.auth ? { [ENV.authKeysetFile]: `${AUTH_KEYSET_DIR}/keyset.json` } : {}),
    // The address the char server hands players on character select.
    ...(c.key === "charServer"
      ? {
          [ENV.gatewayAddress]: `${r}-gateway.${region.metadata!.namespace}.svc:${region.spec.gateway?.service?.port ?? 7000}`,
          ...(region.spec.startPoint
            ? {
                HYBRIDP2P_START_POINT: `${region.spec.startPoint.map},${region.spec.startPoint.x},${region.spec.startPoint.y}`,
              }
            : {}),
        }
      : {}),
    ...stores.config,
    ...serving.config,
    ...ro.config,
  };
  const authVolume = c.auth
    ? [{ name: "auth-keyset", secret: { secretName: `${r}${AUTH_KEYSET_SECRET_SUFFIX}`, optional: true } }]
    : [];
  const authMount = c.auth ? [{ name: "auth-keyset", mountPath: AUTH_KEYSET_DIR, readOnly: true }] : [];
  const deployment: V1DeploymentSpec = {
    replicas: spec.replicas ?? 1,
    selector: { matchLabels: sel },
    template: {
      metadata: { labels, annotations: { [CONFIG_HASH_ANNOTATION]: hashOf([config, stores.secretEnv]) } },
      spec: {
        serviceAccountName: name,
        automountServiceAccountToken: false,
        enableServiceLinks: false,
        securityContext: podSecurityContext(WORKLOAD_UID),
        containers: [
          {
            name: c.component,
            image: workloadImage(region),
            command: [...WORKLOAD_COMMAND, c.subcommand],
            ports: [{ name: c.portName, containerPort: port }, ...observabilityPorts(), ...ro.ports],
            envFrom: [{ configMapRef: { name } }],
            env: [...podIdentityEnv(), ...stores.secretEnv],
            resources: resources(spec.resources, DEFAULT_RESOURCES.component),
            ...workloadProbes(),
            securityContext: containerSecurityContext(),
            volumeMounts: [
              { name: "tmp", mountPath: "/tmp" },
              ...authMount,
              ...serving.volumeMounts,
              ...stores.volumeMounts,
            ],
          },
        ],
        volumes: [{ name: "tmp", emptyDir: {} }, ...authVolume, ...serving.volumes, ...stores.volumes],
      },
    },
  };
  const svcType = spec.service?.type ?? "ClusterIP";
  return [
    child("v1", "ServiceAccount", name, owner, labels, { automountServiceAccountToken: false }),
    child("v1", "ConfigMap", name, owner, labels, { data: config }),
    child("apps/v1", "Deployment", name, owner, labels, { spec: deployment }),
    child("v1", "Service", name, owner, labels, {
      spec: {
        type: svcType,
        selector: sel,
        ports: [
          {
            name: c.portName,
            port,
            targetPort: c.portName,
            protocol: "TCP",
            ...(spec.service?.nodePort !== undefined && svcType !== "ClusterIP"
              ? { nodePort: spec.service.nodePort }
              : {}),
          },
        ],
      },
    }),
    podDisruptionBudget(name, owner, labels, sel),
    ingressPolicy(name, owner, labels, sel, [
      // Every component's service port faces players (the SDK signs up and logs in at login,
      // picks characters at char, plays at the gateway, meshes at the coordinator): any source.
      { ports: [{ port, protocol: "TCP" }] },
      ...ro.ingress,
      observabilityIngress(),
    ]),
  ];
}

/** Every child of the Region, in apply order (stores and config before the workloads using them).
 * `secrets`: what the managed stores' configuration needs from the generated Secrets. */
export function renderRegion(input: Region, secrets: StoreSecrets = {}): KubeObject[] {
  const region = withRegionDefaults(input);
  const out: KubeObject[] = [];
  for (const store of STORE_NAMES) {
    if (!isExternal(storeSpec(region, store))) out.push(...renderManagedStore(region, store, secrets));
  }
  for (const c of COMPONENTS) out.push(...renderComponent(region, c));
  out.push(...renderRoServices(region, regionOwner(region)));
  return out;
}
