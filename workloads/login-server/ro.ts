// The login server's RO endpoint (PACKETVER 20101124): 0x0064 in, 0x0069 or 0x006a out.
//
// The same accounts, lockout, hashing limits and login sessions as the HTTP login
// (attemptLogin): an RO login is a login session in Redis like any other, so logging out
// everywhere or a ban ends it too. On success the client gets the login ids it must show the
// char server (a login ticket in Redis, workloads/auth/ro-tickets.ts) and the char server's
// RO address as clients reach it (the Service's node port or load balancer port).
//
// 0x0064 carries the password in plain text: the protocol's own weakness, which is why the RO
// endpoints are off unless the Region turns them on (see platform/protocol/ro/README.md).

import { HttpError } from "../../platform/http.ts";
import type { Logger } from "../../platform/log.ts";
import type { ClientPacket, PacketOf } from "../../platform/protocol/ro/codec.ts";
import { type RoConnection, type RoEndpoint, startRoEndpoint } from "../../platform/protocol/ro/endpoint.ts";
import { newLoginId, RoTickets, resolveAdvertised, roId } from "../auth/ro-tickets.ts";
import { attemptLogin, type LoginApp } from "./app.ts";
import type { RoLoginConfig } from "./config.ts";

/** 0x006a error codes (rAthena's list; the client shows its own text for each). */
export const RO_LOGIN_ERROR = {
  unregistered: 0,
  wrongPassword: 1,
  rejected: 3,
  blocked: 4,
  prohibitedUntil: 6,
} as const;

const USERNAME = /^[A-Za-z0-9_]{1,23}$/;

interface State {
  busy: boolean;
  done: boolean;
}

function refuse(c: RoConnection<State>, error: number, blockDate = ""): void {
  c.send({ type: "loginRefused", error, blockDate });
  c.end("login refused");
}

/** "YYYY-MM-DD HH:MM:SS" in UTC, the block date 0x006a shows. */
function blockDate(at: number): string {
  return new Date(at).toISOString().slice(0, 19).replace("T", " ");
}

export async function startRoLogin(app: LoginApp, cfg: RoLoginConfig, log: Logger): Promise<RoEndpoint> {
  const tickets = new RoTickets(app.deps.redis, app.cfg.redisPrefix);
  const ip = await resolveAdvertised(cfg.charAddress.host);
  const onLogin = async (c: RoConnection<State>, p: PacketOf<"login">) => {
    if (c.state.done || c.state.busy) return;
    c.state.busy = true;
    try {
      if (!USERNAME.test(p.username) || p.password.length === 0) {
        refuse(c, RO_LOGIN_ERROR.unregistered);
        return;
      }
      const out = await attemptLogin(app, p.username, p.password, c.remoteAddress, log);
      if (!out.ok) {
        if (out.code === "locked")
          refuse(c, RO_LOGIN_ERROR.prohibitedUntil, blockDate(Date.now() + out.retryAfterMs));
        else if (out.code === "disabled") refuse(c, RO_LOGIN_ERROR.blocked);
        // One answer for an unknown name and a wrong password, as on the HTTP path.
        else refuse(c, RO_LOGIN_ERROR.wrongPassword);
        return;
      }
      const accountId = roId(out.session.accountId);
      if (accountId === undefined) {
        log.warn("account id does not fit the RO protocol", { accountId: out.session.accountId });
        refuse(c, RO_LOGIN_ERROR.rejected);
        return;
      }
      const t = {
        accountId: out.session.accountId,
        username: out.session.username,
        sessionId: out.session.sessionId,
        loginId1: newLoginId(),
        loginId2: newLoginId(),
        sex: 1,
      };
      await tickets.putLogin(t, app.cfg.sessionTtlMs);
      c.state.done = true;
      c.send({
        type: "loginOk",
        loginId1: t.loginId1,
        accountId,
        loginId2: t.loginId2,
        lastIp: 0,
        lastLogin: "",
        sex: t.sex,
        items: [{ ip, port: cfg.charAddress.port, name: cfg.serverName, users: 0, type: 0, isNew: 0 }],
      });
      log.info("RO login", { accountId: t.accountId, sessionId: t.sessionId, address: c.remoteAddress });
    } catch (err) {
      if (err instanceof HttpError && err.status === 503) refuse(c, RO_LOGIN_ERROR.rejected);
      else throw err;
    } finally {
      c.state.busy = false;
    }
  };
  return startRoEndpoint<State>({
    name: "ro-login",
    port: cfg.port,
    host: cfg.host,
    log,
    idleTimeoutMs: 60_000,
    handler: {
      open: () => ({ busy: false, done: false }),
      packet: (c, p: ClientPacket) => {
        if (p.type === "login") return onLogin(c, p);
        // Anything else a client may send the login server is skipped.
      },
    },
  });
}
