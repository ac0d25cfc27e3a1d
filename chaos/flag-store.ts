// Flag store faults: one operator (`hybrid-operator run`, a process of its own) over one Region of
// CHAOS_ZONES zones (default 20), a simulated map-server pod per zone and two region-wide pods
// (gateway, coordinator), all real flag clients on one etcd connection that goes through a TCP
// proxy (so the pods alone can be cut off), and NATS for their reports. Three phases:
//
// 1. Auto recovery: the flag etcd killed for longer than the pods' grace period (CHAOS_GRACE_MS,
//    default 10 s, the flag client's default): every pod enters fallback no earlier than the grace
//    period after the store went, and leaves it once the store is back and the policy's backoff
//    (CHAOS_BACKOFF_SECONDS, default 2) has passed, not before.
// 2. Manual recovery: the same outage; the pods stay in fallback after the store returns until
//    P2P is switched off for their zones (the policy is toggled off), then leave it.
// 3. The loop: the policy toggled CHAOS_TOGGLES times (default 20) while the flag etcd is killed
//    and started again on the same port and data directory CHAOS_RESTARTS times (default 5, each
//    down CHAOS_DOWN_MS, default 1000) and compacted CHAOS_COMPACTIONS times (default 5) at its
//    current revision while the pods are cut off and the operator publishes, so their watches
//    resume from a compacted revision and must re-sync.
//
// Checked: no pod enters fallback before the grace period of an outage (none at all in the loop,
// whose outages are all shorter than it), none goes back in epoch, every pod applies the last
// published epoch and the final `enabled` (0 lost flag changes), the Zones' status shows that
// epoch, and the pointer's epochs only grow under the one fencing token (chaos/history.ts).
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { type ZoneObject, zoneResource } from "../operator/controllers/context.ts";
import { FlagClient } from "../platform/flags/client.ts";
import { connectFlagStore } from "../platform/flags/etcd.ts";
import { layout, parsePointer } from "../platform/flags/layout.ts";
import { connectNats, withUrl } from "../platform/stores/access.ts";
import { sleep } from "../platform/time.ts";
import { type CutProxy, cutProxy } from "../testkit/flags.ts";
import { createNamespace, installCrds, testClient } from "../testkit/kube.ts";
import { envVars, startLocalEnv } from "../testkit/local/services.ts";
import { freePort, type Proc, startProcess } from "../testkit/processes.ts";
import { HistoryCheck } from "./history.ts";
import type { Scenario } from "./scenario.ts";
import { createChaosPolicy, createChaosRegion, patchChaosPolicy } from "./world.ts";

const NS = "chaos-flags";
const PREFIX = "/chaos-flags/v1/";
const repoRoot = new URL("..", import.meta.url).pathname;

interface Outage {
  kind: "restart" | "cut" | "long-auto" | "long-manual";
  down: number;
  /** When the store (or the path to it) was started again: no pod can have seen it before. */
  back?: number;
  /** When it answered again. */
  up?: number;
}

interface Pod {
  name: string;
  client: FlagClient;
  /** Fallback entries and exits (ms), in order. */
  entries: number[];
  exits: number[];
  maxEpoch: number;
  backwards: string[];
}

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

export const flagStore: Scenario = async (log) => {
  const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
  const ZONES = num("CHAOS_ZONES", 20);
  const RESTARTS = num("CHAOS_RESTARTS", 5);
  const COMPACTIONS = num("CHAOS_COMPACTIONS", 5);
  const TOGGLES = num("CHAOS_TOGGLES", 20);
  const GRACE_MS = num("CHAOS_GRACE_MS", 10_000);
  const DOWN_MS = num("CHAOS_DOWN_MS", 1000);
  const BACKOFF_S = num("CHAOS_BACKOFF_SECONDS", 2);
  const CONVERGE_S = num("CHAOS_CONVERGE_SECONDS", 120);
  /** How long after the store answers again a pod may take to notice it. */
  const NOTICE_MS = 3000;

  const running = await startLocalEnv({ services: ["kube", "flags-etcd", "nats"], log });
  const env = running.env;
  const store = running.flagsEtcd!;
  const violations: string[] = [];
  const outages: Outage[] = [];
  const pods: Pod[] = [];
  let operator: Proc | undefined;
  let admin: Etcd3 | undefined;
  let podConn: Etcd3 | undefined;
  let proxy: CutProxy | undefined;
  try {
    const kube = await testClient(env.kubeconfig!);
    await installCrds(kube);
    await createNamespace(kube, NS);
    admin = connectFlagStore(env.etcd!);
    const l = layout(PREFIX);
    const history = new HistoryCheck(PREFIX);
    const watcher = await admin.watch().prefix(PREFIX).startRevision("1").create();
    // How far the history watch has read: a compaction waits for it, so that it never has to
    // resume from a compacted revision itself (it would be cancelled and the history cut short).
    let historyRev = 0;
    watcher.on("put", (kv) => {
      historyRev = Math.max(historyRev, Number(kv.mod_revision));
      history.onPut(kv);
    });
    let historyBroken = "";
    watcher.on("error", (err) => {
      historyBroken = String(err);
    });

    const zoneNames = await createChaosRegion(kube, env, NS, ZONES);
    let enabled = true;
    const auto = { mode: "Auto", backoff: { initialSeconds: BACKOFF_S, maxSeconds: 300 } };
    await createChaosPolicy(kube, NS, { enabled, recovery: auto });
    let toggles = 0;
    const patchPolicy = (spec: Record<string, unknown>) => patchChaosPolicy(kube, NS, spec);
    const toggle = async () => {
      enabled = !enabled;
      toggles++;
      await patchPolicy({ enabled });
    };

    const metrics = await freePort();
    operator = startProcess(
      "operator",
      process.execPath,
      [
        join(repoRoot, "operator/main.ts"),
        "run",
        `--kubeconfig=${env.kubeconfig}`,
        `--namespace=${NS}`,
        "--health-probe-bind-address=0",
        `--metrics-bind-address=127.0.0.1:${metrics}`,
        `--flags-prefix=${PREFIX}`,
      ],
      join(env.stateDir, "logs", "operator.log"),
      { env: { ...process.env, ...envVars(env), POD_NAME: "operator-0" } },
    );
    log(`${ZONES} zones and a policy created; operator started (log: ${operator.logFile})`);

    // ---- the pods: one connection through a proxy that can cut them off -------------------------
    const storePort = Number(new URL(env.etcdEndpoints!).port);
    proxy = await cutProxy(storePort);
    podConn = connectFlagStore(withUrl(env.etcd!, proxy.endpoint.replace(/^http:/, "https:")));
    const nc = await connectNats(env.nats!, { name: "chaos-flag-pods" });
    // The pods' own word that a watch was cancelled (its revision compacted) and re-synced.
    let resyncs = 0;
    const podLog = {
      error: () => {},
      info: () => {},
      warn: (msg: string) => {
        if (msg.startsWith("flag watch cancelled")) resyncs++;
      },
    };
    const addPod = (name: string, service: string, zone?: string) => {
      const client = new FlagClient({
        client: podConn!,
        nats: nc,
        prefix: PREFIX,
        namespace: NS,
        zone,
        service,
        pod: name,
        graceMs: GRACE_MS,
        log: podLog,
      });
      const pod: Pod = { name, client, entries: [], exits: [], maxEpoch: 0, backwards: [] };
      let mode = client.current().mode;
      client.on("state", (s) => {
        if (s.mode === "fallback" && mode !== "fallback") pod.entries.push(Date.now());
        if (s.mode !== "fallback" && mode === "fallback") pod.exits.push(Date.now());
        mode = s.mode;
      });
      client.on("snapshot", (next) => {
        if (next.epoch < pod.maxEpoch) pod.backwards.push(`${pod.maxEpoch} -> ${next.epoch}`);
        pod.maxEpoch = Math.max(pod.maxEpoch, next.epoch);
      });
      pods.push(pod);
    };
    for (const zone of zoneNames) addPod(`${zone}-0`, "map-server", zone);
    addPod("gateway-0", "gateway");
    addPod("coordinator-0", "coordinator");
    await Promise.all(pods.map((p) => p.client.start()));

    const pointerNow = async () => {
      const raw = await admin!.get(l.pointer).string();
      return raw === null ? undefined : parsePointer(l.pointer, raw);
    };
    /** Every zone's document says `enabled` (and the pointer is flipped to it). */
    const published = async (want: boolean) => {
      const docs = await admin!.getAll().prefix(l.zonesPrefix(NS)).strings();
      const vals = Object.values(docs);
      const pointer = await pointerNow();
      return (
        pointer !== undefined &&
        vals.length === ZONES &&
        vals.every((v) => v.includes(`"enabled":${want}`) && v.includes(`"publish":"${pointer.publish}"`))
      );
    };
    const waitFor = async (what: string, ok: () => boolean | Promise<boolean>, ms: number) => {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        try {
          if (await ok()) return true;
        } catch {
          // the store is down: keep trying
        }
        await sleep(100);
      }
      log(`timed out waiting ${ms} ms for ${what}`);
      return false;
    };
    const allPods = (f: (p: Pod) => boolean) => pods.every(f);
    const onFinal = (p: Pod, epoch: number) => {
      const s = p.client.snapshot();
      return (
        s.epoch === epoch &&
        s.zones.size === (p.name.startsWith("z") ? 1 : ZONES) &&
        [...s.zones.values()].every((z) => z.enabled === enabled)
      );
    };
    const settled = async () => {
      if (!(await published(enabled))) return false;
      const e = (await pointerNow())!.epoch;
      return allPods((p) => onFinal(p, e));
    };
    if (!(await waitFor("the first publish on every pod", settled, 60_000)))
      throw new Error("the pods never got the first publish; see the operator's log");
    if (!allPods((p) => p.client.current().mode === "p2p"))
      violations.push("setup: not every pod in P2P mode after the first publish");
    log(`${pods.length} pods on epoch ${(await pointerNow())!.epoch}, P2P`);

    const restart = async (o: Outage, downMs: number, during?: () => Promise<void>) => {
      o.down = Date.now();
      await store.kill();
      outages.push(o);
      await during?.();
      await sleep(Math.max(0, o.down + downMs - Date.now()));
      o.back = Date.now();
      await store.start();
      o.up = Date.now();
    };
    /** Pods counted in fallback (`mode`) now. */
    const inFallback = () => pods.filter((p) => p.client.current().mode === "fallback").length;
    /** Pods that entered fallback during outage `o`. */
    const enteredIn = (o: Outage) => pods.filter((p) => p.entries.some((t) => t >= o.down)).length;

    // ---- phase 1: an outage past the grace period, Auto recovery --------------------------------
    const longDown = GRACE_MS + 3000;
    const p1: Outage = { kind: "long-auto", down: 0 };
    await restart(p1, longDown);
    const enteredAuto = enteredIn(p1);
    if (enteredAuto !== pods.length)
      violations.push(
        `auto: ${pods.length - enteredAuto} pods not in fallback ${longDown} ms into an outage`,
      );
    await waitFor(
      "every pod out of fallback (Auto)",
      () => inFallback() === 0,
      BACKOFF_S * 1000 + NOTICE_MS + 5000,
    );
    let leftEarly = 0;
    let leftLate = 0;
    let maxLeaveMs = 0;
    for (const p of pods) {
      const exit = p.exits.find((t) => t >= p1.back!);
      if (exit === undefined) {
        leftLate++;
        continue;
      }
      maxLeaveMs = Math.max(maxLeaveMs, exit - p1.up!);
      if (exit < p1.back! + BACKOFF_S * 1000) leftEarly++;
      if (exit > p1.up! + NOTICE_MS + BACKOFF_S * 1000) leftLate++;
    }
    if (leftEarly > 0)
      violations.push(`auto: ${leftEarly} pods left fallback before the ${BACKOFF_S} s backoff`);
    if (leftLate > 0)
      violations.push(
        `auto: ${leftLate} pods still in fallback ${NOTICE_MS} ms past the backoff after the store returned`,
      );
    log(`auto recovery: ${enteredAuto} pods fell back, all left ${maxLeaveMs} ms after the store answered`);

    // ---- phase 2: the same with Manual recovery ---------------------------------------------------
    await patchPolicy({ recovery: { mode: "Manual", backoff: null } });
    await waitFor(
      "Manual recovery on every pod",
      () =>
        allPods((p) => [...p.client.snapshot().zones.values()].every((z) => z.recovery.mode === "Manual")),
      30_000,
    );
    const p2: Outage = { kind: "long-manual", down: 0 };
    await restart(p2, longDown);
    const enteredManual = enteredIn(p2);
    if (enteredManual !== pods.length)
      violations.push(
        `manual: ${pods.length - enteredManual} pods not in fallback ${longDown} ms into an outage`,
      );
    await sleep(BACKOFF_S * 1000 + NOTICE_MS);
    const stayed = inFallback();
    if (stayed !== pods.length)
      violations.push(
        `manual: ${pods.length - stayed} pods left fallback on their own after the store returned`,
      );
    const offAt = Date.now();
    await toggle(); // P2P off: a Manual latch is released
    await waitFor("every pod out of fallback (Manual, P2P off)", () => inFallback() === 0, 30_000);
    const manualLeaveMs = Date.now() - offAt;
    if (inFallback() > 0)
      violations.push(`manual: ${inFallback()} pods still in fallback after P2P was switched off`);
    log(
      `manual recovery: ${enteredManual} fell back, ${stayed} stayed; out ${manualLeaveMs} ms after P2P off`,
    );

    // ---- phase 3: restarts and compactions during toggles -----------------------------------------
    const faults = shuffle([
      ...Array<"restart">(RESTARTS).fill("restart"),
      ...Array<"compact">(COMPACTIONS).fill("compact"),
    ]);
    const loopToggles = Math.max(0, TOGGLES - 1);
    let compactions = 0;
    let restarts = 0;
    let compactedRevision = 0;
    let racedCompactions = 0;
    const compactNow = async () => {
      // Two writes past the publish, so the compacted revision lies beyond where any pod's
      // watch resumes (etcd keeps the compaction revision itself: a watch resuming exactly
      // there would not be cancelled).
      let rev = 0;
      for (let k = 0; k < 2; k++)
        rev = Number(
          (await admin!.put(`${PREFIX}chaos/bump`).value(String(Date.now())).exec()).header.revision,
        );
      await waitFor("the history watch to catch up", () => historyRev >= rev, 10_000);
      await admin!.kv.compact({ revision: String(rev), physical: true });
      compactedRevision = rev;
    };
    for (let i = 0; i < faults.length; i++) {
      const n =
        Math.floor(((i + 1) * loopToggles) / faults.length) - Math.floor((i * loopToggles) / faults.length);
      const before = Math.floor(n / 2);
      await sleep(200 + Math.random() * 800);
      for (let k = 0; k < before; k++) {
        await toggle();
        await sleep(Math.random() * 300);
      }
      if (faults[i] === "restart") {
        // The rest of the toggles while the store is down: the operator's publish must retry.
        await restart({ kind: "restart", down: 0 }, DOWN_MS, async () => {
          for (let k = before; k < n; k++) await toggle();
        });
        restarts++;
        // Every other restart is compacted as soon as the operator has published again, racing
        // the pods' reconnect: a watch resumes either before the compaction or from behind it.
        if (restarts % 2 === 0) {
          await waitFor(`the publish of enabled=${enabled}`, () => published(enabled), 3000);
          await compactNow();
          racedCompactions++;
        }
      } else {
        // The pods cut off; the operator publishes; the store compacted at its current revision;
        // the pods back: their watches resume from a compacted revision.
        const o: Outage = { kind: "cut", down: Date.now() };
        outages.push(o);
        await proxy.cut();
        for (let k = before; k < n; k++) await toggle();
        await waitFor(`the publish of enabled=${enabled}`, () => published(enabled), GRACE_MS / 2);
        await compactNow();
        compactions++;
        o.back = Date.now();
        await proxy.restore();
        o.up = Date.now();
      }
      log(`${restarts} restarts, ${compactions} compactions, ${toggles} toggles`);
    }
    if (faults.length === 0) while (toggles < TOGGLES) await toggle();
    const lastFault = Date.now();

    // ---- convergence --------------------------------------------------------------------------
    let converged = false;
    let why = "";
    while (Date.now() - lastFault < CONVERGE_S * 1000) {
      try {
        if (await settled()) {
          converged = true;
          break;
        }
        const pointer = await pointerNow();
        const behind = pods.filter((p) => !onFinal(p, pointer?.epoch ?? -1));
        why = `${behind.length} pods not on epoch ${pointer?.epoch} with enabled=${enabled} (e.g. ${behind[0]?.name}: epoch ${behind[0]?.client.snapshot().epoch})`;
      } catch (err) {
        why = String(err);
      }
      await sleep(100);
    }
    const convergeS = (Date.now() - lastFault) / 1000;
    if (!converged)
      violations.push(`lost flag changes: not converged ${CONVERGE_S} s after the last fault: ${why}`);
    const finalEpoch = (await pointerNow())?.epoch ?? 0;
    // The Zones' status says so too (the pods' reports, folded by the operator).
    let stale: ZoneObject[] = [];
    await waitFor(
      "the Zones' status at the final epoch",
      async () => {
        const zones = (await kube.list<ZoneObject>(zoneResource, NS)).items;
        stale = zones.filter((z) => z.status?.appliedEpoch !== finalEpoch);
        return stale.length === 0;
      },
      30_000,
    );
    if (stale.length > 0)
      violations.push(
        `${stale.length} Zones' status not at epoch ${finalEpoch} (e.g. ${stale[0]!.metadata.name}: ${stale[0]!.status?.appliedEpoch})`,
      );

    // ---- fallback timing over every outage ---------------------------------------------------------
    // An entry is in time only during an outage at least the grace period old (up to when the pods
    // could notice the store back); the loop's outages are all shorter, so none may have any.
    let early = 0;
    let entriesTotal = 0;
    for (const p of pods)
      for (const t of p.entries) {
        entriesTotal++;
        const o = outages.find((x) => t >= x.down && t <= (x.up ?? Date.now()) + NOTICE_MS);
        if (o === undefined || t < o.down + GRACE_MS) {
          early++;
          if (early <= 5)
            violations.push(
              `${p.name} entered fallback ${o ? `${t - o.down} ms into a ${o.kind} outage` : "outside any outage"} (grace ${GRACE_MS} ms)`,
            );
        }
      }
    const longest = Math.max(
      0,
      ...outages.filter((o) => !o.kind.startsWith("long")).map((o) => o.up! - o.down),
    );
    if (compactions > 0 && resyncs === 0)
      violations.push("no pod's watch was cancelled by a compaction: the compaction path was not exercised");
    if (longest >= GRACE_MS)
      violations.push(`a loop outage lasted ${longest} ms, not shorter than the grace period`);
    for (const p of pods)
      if (p.backwards.length > 0) violations.push(`${p.name} went back in epoch: ${p.backwards.join(", ")}`);
    await watcher.cancel().catch(() => undefined);
    violations.push(...history.violations);
    if (historyBroken)
      violations.push(`the history watch was cancelled (${historyBroken}): its check is incomplete`);
    await nc.close();
    kube.close();
    return {
      runs: restarts + compactions + 2,
      violations,
      figures: {
        zones: ZONES,
        pods: pods.length,
        restarts: restarts + 2,
        compactions,
        compactions_after_restart: racedCompactions,
        compacted_revision: compactedRevision,
        watch_resyncs: resyncs,
        toggles,
        final_epoch: finalEpoch,
        pointers_written: history.pointers,
        converge_seconds: convergeS.toFixed(1),
        longest_short_outage_ms: longest,
        grace_ms: GRACE_MS,
        fallback_entries: entriesTotal,
        fallbacks_early: early,
        auto_left_early: leftEarly,
        auto_left_late: leftLate,
        auto_leave_ms: maxLeaveMs,
        manual_stayed: `${stayed}/${pods.length}`,
        manual_leave_ms: manualLeaveMs,
      },
    };
  } finally {
    await operator?.stop();
    await Promise.all(pods.map((p) => p.client.close().catch(() => undefined)));
    podConn?.close();
    admin?.close();
    await proxy?.close();
    await running.stop();
  }
};
