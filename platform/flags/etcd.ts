// An etcd3 client tuned for the flag plane: the library's defaults keep a host "open-circuited"
// for 5 s after three failures and back watches off up to 30 s, which turns a one-second etcd
// restart into half a minute of stale flags. Here a failed host is retried at once, watches
// reconnect within a second, and gRPC keepalives notice a silent peer.
import { Etcd3, type IOptions } from "etcd3";
import { etcdOptions, type StoreAccess } from "../stores/access.ts";

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;
type Backoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

/** A pass-through fault policy (cockatiel's IPolicy shape): no circuit breaker per host. */
function passThrough(): Policy {
  const noopEvent = () => ({ dispose() {} });
  const policy = {
    _altReturn: undefined,
    onSuccess: noopEvent,
    onFailure: noopEvent,
    // async: a synchronous throw inside fn must become a rejection (the pool's markFailed relies on it).
    execute: async <T>(
      fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T,
      signal = new AbortController().signal,
    ) => fn({ signal }),
  };
  return policy as unknown as Policy;
}

/** Capped exponential backoff (cockatiel's IBackoff shape) for watch reconnects. */
function cappedBackoff(initialMs: number, maxMs: number): Backoff {
  const at = (ms: number): unknown => ({
    duration: ms,
    next: () => at(Math.min(ms * 2, maxMs)),
  });
  return at(initialMs) as Backoff;
}

export interface FlagEtcdOptions {
  /** Upper bound of the watch reconnect backoff. */
  maxWatchBackoffMs?: number;
  dialTimeoutMs?: number;
  /** Deadline of every request that is not a stream (watches and lease keepalives are): a
   * store that stopped answering fails the request instead of holding it forever. Default 10 s. */
  callTimeoutMs?: number;
}

/** A flag-store client with the access's endpoints, TLS and credentials (platform/stores). */
export function connectFlagStore(access: StoreAccess, opts: FlagEtcdOptions = {}): Etcd3 {
  const callTimeoutMs = opts.callTimeoutMs ?? 10_000;
  return new Etcd3({
    ...etcdOptions(access),
    dialTimeout: opts.dialTimeoutMs ?? 3000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      host: () => passThrough(),
      watchBackoff: cappedBackoff(50, opts.maxWatchBackoffMs ?? 1000),
    },
    grpcOptions: {
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5000,
      "grpc.keepalive_permit_without_calls": 1,
      // gRPC's own reconnect backoff grows to 120 s by default; flags must come back in about a second.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    },
  });
}
