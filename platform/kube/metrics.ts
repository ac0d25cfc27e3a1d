// Prometheus metrics for the controller runtime. Each Manager owns its own registry so
// two operator instances can live in one process (the leader-election test does this).
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export class Metrics {
  readonly registry = new Registry();
  readonly reconciles: Counter<"controller" | "result">;
  readonly reconcileErrors: Counter<"controller">;
  readonly reconcileDuration: Histogram<"controller">;
  readonly queueDepth: Gauge<"controller">;
  readonly apiLatency: Histogram<"verb" | "resource" | "code">;
  readonly apiWrites: Counter<"verb" | "resource">;
  readonly isLeader: Gauge;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.reconciles = new Counter({
      name: "hybridp2p_reconcile_total",
      help: "Reconciles by controller and result (success, error, requeue).",
      labelNames: ["controller", "result"],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: "hybridp2p_reconcile_errors_total",
      help: "Reconciles that returned an error.",
      labelNames: ["controller"],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: "hybridp2p_reconcile_duration_seconds",
      help: "Time spent in one reconcile.",
      labelNames: ["controller"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.queueDepth = new Gauge({
      name: "hybridp2p_workqueue_depth",
      help: "Items waiting in the work queue.",
      labelNames: ["controller"],
      registers,
    });
    this.apiLatency = new Histogram({
      name: "hybridp2p_kube_api_request_duration_seconds",
      help: "Kubernetes API request latency by verb, resource and status code.",
      labelNames: ["verb", "resource", "code"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.apiWrites = new Counter({
      name: "hybridp2p_kube_api_writes_total",
      help: "Write requests (create, patch, update, delete) sent to the Kubernetes API.",
      labelNames: ["verb", "resource"],
      registers,
    });
    this.isLeader = new Gauge({
      name: "hybridp2p_leader",
      help: "1 while this instance holds the leader lease.",
      registers,
    });
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
