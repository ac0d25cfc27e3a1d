// A small client of the login and char servers for the client SDK and bots: sign up (or log
// in), make sure a character exists, select it, and get what the gateway needs.
// Uses the global fetch unless given another (Node with the Region's CA: client/https.ts), so it
// runs anywhere Node or a browser does.

export class AuthApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(`${status} ${code}: ${message}`);
    this.name = "AuthApiError";
    this.status = status;
    this.code = code;
  }
}

export interface CharacterSummary {
  id: string;
  slot: number;
  name: string;
  map: string;
  x: number;
  y: number;
}

export interface Selected {
  gateway: string;
  token: string;
  expiresAt: string;
  character: CharacterSummary;
}

async function request<T>(
  http: typeof fetch,
  base: string,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await http(`${base.replace(/\/$/, "")}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = text ? (JSON.parse(text) as { error?: { code: string; message: string } }) : {};
  if (!res.ok)
    throw new AuthApiError(res.status, json.error?.code ?? "error", json.error?.message ?? res.statusText);
  return json as T;
}

export class AuthClient {
  readonly loginUrl: string;
  readonly charUrl: string;
  token: string | undefined;
  private readonly http: typeof fetch;

  /** `fetch`: how to reach https:// URLs with a CA of one's own (default: the global fetch). */
  constructor(opts: { loginUrl: string; charUrl: string; fetch?: typeof fetch }) {
    this.loginUrl = opts.loginUrl;
    this.charUrl = opts.charUrl;
    this.http = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  private session(): string {
    if (!this.token) throw new Error("not logged in");
    return this.token;
  }

  async signUp(username: string, password: string): Promise<{ accountId: string }> {
    return request(this.http, this.loginUrl, "POST", "/v1/accounts", { username, password });
  }

  async login(
    username: string,
    password: string,
  ): Promise<{ accountId: string; sessionId: string; expiresAt: string }> {
    const r = await request<{ token: string; accountId: string; sessionId: string; expiresAt: string }>(
      this.http,
      this.loginUrl,
      "POST",
      "/v1/sessions",
      { username, password },
    );
    this.token = r.token;
    return r;
  }

  /**
   * Signs up (an existing account is fine), then logs in: bots. Signing up first, not logging in
   * first, matters: a login to an account that does not exist yet is a failed login, and a few
   * of those from one address lock the address out. A sign-up refused for another reason (too
   * many from this address) still tries the login, as the account may exist from an earlier run.
   */
  async loginOrSignUp(username: string, password: string) {
    let refused: AuthApiError | undefined;
    try {
      await this.signUp(username, password);
    } catch (e) {
      if (!(e instanceof AuthApiError)) throw e;
      if (e.code !== "username_taken") refused = e;
    }
    try {
      return await this.login(username, password);
    } catch (e) {
      // No such account after all: the sign-up's refusal is the reason that helps.
      throw refused && e instanceof AuthApiError && e.status === 401 ? refused : e;
    }
  }

  async logout(): Promise<void> {
    await request(this.http, this.loginUrl, "DELETE", "/v1/session", undefined, this.session());
    this.token = undefined;
  }

  async characters(): Promise<CharacterSummary[]> {
    return (
      await request<{ characters: CharacterSummary[] }>(
        this.http,
        this.charUrl,
        "GET",
        "/v1/characters",
        undefined,
        this.session(),
      )
    ).characters;
  }

  async createCharacter(
    name: string,
    opts: { slot?: number; hair?: number; hairColor?: number } = {},
  ): Promise<CharacterSummary> {
    return (
      await request<{ character: CharacterSummary }>(
        this.http,
        this.charUrl,
        "POST",
        "/v1/characters",
        { name, ...opts },
        this.session(),
      )
    ).character;
  }

  async deleteCharacter(id: string): Promise<void> {
    await request(
      this.http,
      this.charUrl,
      "DELETE",
      `/v1/characters/${encodeURIComponent(id)}`,
      undefined,
      this.session(),
    );
  }

  async select(id: string): Promise<Selected> {
    return request(
      this.http,
      this.charUrl,
      "POST",
      `/v1/characters/${encodeURIComponent(id)}/select`,
      {},
      this.session(),
    );
  }

  /** Selects the named character, creating it when the account has none of that name. */
  async enterAs(name: string): Promise<Selected> {
    const existing = (await this.characters()).find((c) => c.name.toLowerCase() === name.toLowerCase());
    const c = existing ?? (await this.createCharacter(name));
    return this.select(c.id);
  }
}
