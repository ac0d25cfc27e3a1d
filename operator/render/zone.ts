// Zone → its map-server pool: a StatefulSet (stable pod names: map ownership is per pod)
// behind a headless Service, a PodDisruptionBudget and a NetworkPolicy. Pure.
import type { V1StatefulSetSpec } from "@kubernetes/client-node";
import { Value } from "@sinclair/typebox/value";
import type { KubeObject } from "../../platform/kube/meta.ts";
import { type Region, type Zone, ZoneSpec } from "../api/index.ts";
import {
  child,
  containerSecurityContext,
  hashOf,
  ingressPolicy,
  observabilityIngress,
  observabilityPorts,
  podDisruptionBudget,
  podIdentityEnv,
  podSecurityContext,
  regionPods,
  resources,
  selectorLabels,
  standardLabels,
  workloadProbes,
} from "./common.ts";
import {
  CONFIG_HASH_ANNOTATION,
  DEFAULT_RESOURCES,
  ENV,
  HEALTH_PORT,
  MAP_SERVER_COMPONENT,
  MAP_SERVER_PORT,
  METRICS_PORT,
  WORKLOAD_COMMAND,
  WORKLOAD_UID,
} from "./constants.ts";
import { withRegionDefaults, workloadImage } from "./region.ts";
import { mapCacheMount } from "./ro.ts";
import { storeWiring } from "./stores.ts";

export function withZoneDefaults(zone: Zone): Zone {
  return { ...zone, spec: Value.Default(ZoneSpec, structuredClone(zone.spec)) as Zone["spec"] };
}

export const mapServerName = (zone: string): string => `${zone}-${MAP_SERVER_COMPONENT}`;

export function mapServerSelector(zone: string): Record<string, string> {
  return selectorLabels(MAP_SERVER_COMPONENT, zone, MAP_SERVER_COMPONENT);
}

/** The Zone's children. The Region supplies the image and the data-store wiring. */
export function renderZone(input: Zone, regionInput: Region): KubeObject[] {
  const zone = withZoneDefaults(input);
  const region = withRegionDefaults(regionInput);
  const z = zone.metadata!.name!;
  const r = zone.spec.regionRef.name;
  const pool = zone.spec.mapServer ?? {};
  const name = mapServerName(z);
  const owner = { apiVersion: zone.apiVersion!, kind: zone.kind!, metadata: zone.metadata! };
  const sel = mapServerSelector(z);
  const labels = standardLabels(sel, { region: r, zone: z });
  const stores = storeWiring(region, MAP_SERVER_COMPONENT);
  const cache = mapCacheMount(region);
  const env: Record<string, string> = {
    [ENV.region]: r,
    [ENV.zone]: z,
    [ENV.maps]: zone.spec.maps.map((m) => m.name).join(","),
    [ENV.workerThreads]: String(pool.workerThreads ?? 2),
    [ENV.tickRateHz]: String(pool.tickRateHz ?? 20),
    [ENV.maxPlayers]: String(pool.maxPlayers ?? 500),
    [ENV.healthPort]: String(HEALTH_PORT),
    [ENV.metricsPort]: String(METRICS_PORT),
    ...stores.config,
    ...cache.env,
  };
  const sts: V1StatefulSetSpec = {
    replicas: pool.replicas ?? 1,
    serviceName: name,
    // Pods are peers, not a sequence: start and replace them in parallel.
    podManagementPolicy: "Parallel",
    selector: { matchLabels: sel },
    template: {
      metadata: { labels, annotations: { [CONFIG_HASH_ANNOTATION]: hashOf([env, stores.secretEnv]) } },
      spec: {
        automountServiceAccountToken: false,
        enableServiceLinks: false,
        securityContext: podSecurityContext(WORKLOAD_UID),
        containers: [
          {
            name: MAP_SERVER_COMPONENT,
            image: workloadImage(region),
            command: [...WORKLOAD_COMMAND, MAP_SERVER_COMPONENT],
            ports: [{ name: "map", containerPort: MAP_SERVER_PORT }, ...observabilityPorts()],
            env: [
              ...Object.entries(env).map(([k, value]) => ({ name: k, value })),
              ...podIdentityEnv(),
              ...stores.secretEnv,
            ],
            resources: resources(pool.resources, DEFAULT_RESOURCES.mapServer),
            ...workloadProbes(),
            securityContext: containerSecurityContext(),
            volumeMounts: [{ name: "tmp", mountPath: "/tmp" }, ...stores.volumeMounts, ...cache.mounts],
          },
        ],
        volumes: [{ name: "tmp", emptyDir: {} }, ...stores.volumes, ...cache.volumes],
      },
    },
  };
  return [
    // Headless, publishing unready pods too: peers find a starting pod during a map hand-over.
    child("v1", "Service", name, owner, labels, {
      spec: {
        clusterIP: "None",
        publishNotReadyAddresses: true,
        selector: sel,
        ports: [{ name: "map", port: MAP_SERVER_PORT, targetPort: "map", protocol: "TCP" }],
      },
    }),
    child("apps/v1", "StatefulSet", name, owner, labels, { spec: sts }),
    podDisruptionBudget(name, owner, labels, sel),
    ingressPolicy(name, owner, labels, sel, [
      {
        from: [regionPods(r, "gateway"), regionPods(r, "coordinator"), regionPods(r, MAP_SERVER_COMPONENT)],
        ports: [{ port: MAP_SERVER_PORT, protocol: "TCP" }],
      },
      observabilityIngress(),
    ]),
  ];
}
