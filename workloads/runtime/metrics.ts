// Metrics read from a workload's own stats when Prometheus scrapes, rather than updated on every
// event: `gauge` for a level (connections, peers), `total` for a running count kept by the
// workload, exported as a counter (`_total`) so rate() and resets work as Prometheus expects.
//
//   const { gauge, total } = scrapedMetrics(registry);
//   gauge("hybridp2p_gateway_sessions", "Authenticated sessions", () => gw.stats.sessions);
import { Counter, Gauge, type Registry } from "prom-client";

export interface ScrapedMetrics {
  gauge(name: string, help: string, read: () => number): void;
  total(name: string, help: string, read: () => number): void;
}

export function scrapedMetrics(registry: Registry): ScrapedMetrics {
  return {
    gauge(name, help, read) {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    },
    total(name, help, read) {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    },
  };
}
