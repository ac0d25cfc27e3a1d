// The SDK's HTTP client in Node for the login and char servers (AuthClient): the global fetch
// under the system's trust, or node:https with the Region's CA (ws.ts's nodeTlsOptions) when
// one is given or HYBRIDP2P_CA_FILE names one. The global fetch takes no CA of its own.
import { Agent, request } from "node:https";
import type { ClientTls } from "./socket.ts";
import { explainTlsError, nodeTlsOptions } from "./ws.ts";

export function nodeFetch(t?: ClientTls): typeof fetch {
  const tls = nodeTlsOptions(t);
  if (!tls.ca && !tls.servername)
    // The global fetch says only "fetch failed"; the certificate's code is in the cause.
    return ((input: string | URL | Request, init?: RequestInit) =>
      fetch(input, init).catch((err: Error) => {
        const explained = explainTlsError(String(input instanceof Request ? input.url : input), err.cause);
        throw explained === err.cause ? err : explained;
      })) as typeof fetch;
  const agent = new Agent({ ...tls, keepAlive: true });
  return ((input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.protocol !== "https:") return fetch(input, init);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        { method: init?.method ?? "GET", headers: Object.fromEntries(new Headers(init?.headers)), agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const status = res.statusCode ?? 500;
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers))
              for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) headers.append(k, one);
            const empty = status === 204 || status === 304 || init?.method === "HEAD";
            resolve(
              new Response(empty ? null : Buffer.concat(chunks), {
                status,
                statusText: res.statusMessage,
                headers,
              }),
            );
          });
        },
      );
      req.on("error", (err) => reject(explainTlsError(url.href, err)));
      init?.signal?.addEventListener("abort", () => req.destroy(init.signal?.reason as Error));
      if (typeof init?.body === "string") req.end(init.body);
      else req.end();
    });
  }) as typeof fetch;
}
