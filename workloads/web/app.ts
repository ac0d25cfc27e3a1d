// The browser client: sign up or log in (login server), pick or create a character (char
// server), then play through the gateway that served this page, on a canvas. It is the SDK's
// P2PClient with the browser's own WebSocket and RTCPeerConnection: it follows the P2P client
// config the gateway pushes, meshes with its neighbours through the coordinator while its map
// is in p2p mode, and falls back to the server path as the SDK does.
//
// Where the rest of the region is: GET /v1/region on the gateway (login and char servers,
// coordinators), each overridable by a query parameter (?login=…&char=…&coordinator=…&gateway=…).
// `window.hybrid.state()` tells what the page shows (for tests and the curious).
import type { Entity, ServerMessage } from "../../platform/protocol/messages.ts";
import { P2PClient } from "../client/p2p.ts";
import { w3cSocket } from "../client/socket.ts";
import { browser, byId, type Canvas, type El } from "./dom.ts";
import { browserRtc } from "./rtc.ts";

interface Region {
  loginUrl?: string;
  charUrl?: string;
  coordinators?: string[];
}

interface Character {
  id: string;
  name: string;
  lastMap?: string;
  last_map?: string;
  map?: string;
}

const VIEW = 32; // cells across the canvas

const params = new URLSearchParams(browser.location.search);
const state = {
  loginUrl: "",
  charUrl: "",
  gatewayUrl:
    params.get("gateway") ??
    `${browser.location.protocol === "https:" ? "wss" : "ws"}://${browser.location.host}/`,
  coordinators: [] as string[],
  sessionToken: "",
  client: undefined as P2PClient | undefined,
  me: { x: 0, y: 0 },
  chat: [] as string[],
  screen: "loading",
  error: "",
};

function show(screen: "auth" | "chars" | "game"): void {
  state.screen = screen;
  for (const id of ["auth", "chars", "game"]) byId(id).hidden = id !== screen;
}

function setStatus(text: string): void {
  byId("status").textContent = text;
}

async function api(
  base: string,
  path: string,
  init: RequestInit = {},
  token = state.sessionToken,
): Promise<unknown> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base.replace(/\/$/, "")}${path}`, { ...init, headers });
  const text = await res.text();
  const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  if (!res.ok) {
    const err = body.error as { message?: string; code?: string } | undefined;
    throw new Error(err?.message ?? `${res.status} ${res.statusText}`);
  }
  return body;
}

// ---- accounts and characters ----------------------------------------------------------------

async function logIn(): Promise<void> {
  const username = byId("username").value.trim();
  const password = byId("password").value;
  const r = (await api(state.loginUrl, "/v1/sessions", {
    method: "POST",
    body: JSON.stringify({ username, password }),
  })) as { token: string };
  state.sessionToken = r.token;
  await listCharacters();
}

async function signUp(): Promise<void> {
  const username = byId("username").value.trim();
  const password = byId("password").value;
  await api(
    state.loginUrl,
    "/v1/accounts",
    { method: "POST", body: JSON.stringify({ username, password }) },
    "",
  );
  await logIn();
}

async function listCharacters(): Promise<void> {
  const r = (await api(state.charUrl, "/v1/characters")) as { characters: Character[] };
  const list = byId("char-list");
  list.innerHTML = "";
  for (const c of r.characters) {
    const li = browser.document.createElement("li");
    const b = browser.document.createElement("button");
    b.className = "pick";
    b.dataset.id = c.id;
    b.textContent = `Play ${c.name}${mapOf(c) ? ` (${mapOf(c)})` : ""}`;
    b.addEventListener("click", () => void guard("chars-error", () => play(c.id)));
    li.appendChild(b);
    list.appendChild(li);
  }
  show("chars");
  setStatus("logged in");
}

function mapOf(c: Character): string {
  return c.lastMap ?? c.last_map ?? c.map ?? "";
}

async function createCharacter(): Promise<void> {
  const name = byId("char-name").value.trim();
  await api(state.charUrl, "/v1/characters", { method: "POST", body: JSON.stringify({ name }) });
  byId("char-name").value = "";
  await listCharacters();
}

// ---- playing ---------------------------------------------------------------------------------

async function play(characterId: string): Promise<void> {
  const r = (await api(state.charUrl, `/v1/characters/${encodeURIComponent(characterId)}/select`, {
    method: "POST",
  })) as { token: string };
  setStatus("connecting to the gateway");
  const client = await P2PClient.connect({
    url: state.gatewayUrl,
    token: r.token,
    socket: w3cSocket,
    rtc: browserRtc,
    coordinators: state.coordinators.length > 0 ? state.coordinators : undefined,
  });
  state.client = client;
  state.me = client.position;
  client.onMessage((m) => onServer(client, m));
  void client.closed.then((c) => setStatus(`disconnected: ${c.reason}`));
  show("game");
  setStatus(`playing ${client.map}`);
  byId("map").focus();
  draw();
}

function onServer(client: P2PClient, m: ServerMessage): void {
  switch (m.type) {
    case "welcome":
    case "mapChange":
    case "respawn":
      if (m.type !== "respawn" || m.entity === client.entity) state.me = { x: m.x, y: m.y };
      return;
    case "aoi": {
      // The server walks the character in server mode: its position is the server's.
      const self = client.world.get(client.entity);
      if (self && client.serverMode) state.me = { x: self.x, y: self.y };
      return;
    }
    case "chatMsg":
      addChat(`${m.name}: ${m.text}`);
      return;
    case "mode":
      addChat(`* map ${m.map} is now in ${m.mode} mode${m.reason ? ` (${m.reason})` : ""}`);
      return;
    default:
      return;
  }
}

function addChat(line: string): void {
  state.chat.push(line);
  if (state.chat.length > 200) state.chat.shift();
  const log = byId("chat-log");
  const div = browser.document.createElement("div");
  div.textContent = line;
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
}

function walk(x: number, y: number): void {
  const c = state.client;
  if (!c) return;
  const [w, h] = [Math.max(1, c.width), Math.max(1, c.height)];
  const tx = Math.max(0, Math.min(w - 1, Math.round(x)));
  const ty = Math.max(0, Math.min(h - 1, Math.round(y)));
  c.move(tx, ty);
  // In p2p mode the client owns its position; in server mode the server walks there.
  if (!c.serverMode || c.mode === "p2p") state.me = { x: tx, y: ty };
}

function viewOrigin(): { ox: number; oy: number } {
  return { ox: Math.floor(state.me.x) - VIEW / 2, oy: Math.floor(state.me.y) - VIEW / 2 };
}

function draw(): void {
  const c = state.client;
  const canvas = byId<Canvas>("map");
  const ctx = canvas.getContext("2d");
  const px = canvas.width / VIEW;
  const { ox, oy } = viewOrigin();
  ctx.fillStyle = "#dfe8d0";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (c) {
    // The map's edges.
    ctx.strokeStyle = "#7a6f5a";
    ctx.lineWidth = 2;
    ctx.strokeRect(-ox * px, -oy * px, c.width * px, c.height * px);
    ctx.font = "11px system-ui";
    ctx.textAlign = "center";
    let players = 0;
    let mobs = 0;
    for (const e of c.world.values()) {
      if (e.id === c.entity) continue;
      if (e.kind === "player") players++;
      else mobs++;
      dot(ctx, e, ox, oy, px, e.kind === "mob" ? (e.alive ? "#b3261e" : "#999") : "#2d5fa8");
    }
    dot(ctx, { x: state.me.x, y: state.me.y, name: "you" }, ox, oy, px, "#1b7f3b");
    const badge = byId("badge");
    badge.textContent = c.badge;
    badge.className = `badge ${c.badge}`;
    byId("map-name").textContent = c.map;
    byId("pos").textContent = `${Math.round(state.me.x)},${Math.round(state.me.y)}`;
    byId("peers").textContent = String(c.connectedPeers.length);
    byId("players").textContent = String(players);
    byId("mobs").textContent = String(mobs);
  }
  browser.requestAnimationFrame(draw);
}

function dot(
  ctx: ReturnType<Canvas["getContext"]>,
  e: Pick<Entity, "x" | "y" | "name">,
  ox: number,
  oy: number,
  px: number,
  color: string,
): void {
  const x = (e.x - ox + 0.5) * px;
  const y = (e.y - oy + 0.5) * px;
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.arc(x, y, px * 0.4, 0, Math.PI * 2);
  ctx.fill();
  ctx.fillStyle = "#222";
  ctx.fillText(e.name, x, y - px * 0.6);
}

// ---- wiring ------------------------------------------------------------------------------------

async function guard(errorEl: string, fn: () => Promise<void>): Promise<void> {
  byId(errorEl).textContent = "";
  try {
    await fn();
  } catch (err) {
    state.error = (err as Error).message;
    byId(errorEl).textContent = state.error;
  }
}

function wire(): void {
  byId("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void guard("auth-error", logIn);
  });
  byId("signup").addEventListener("click", () => void guard("auth-error", signUp));
  byId("create-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void guard("chars-error", createCharacter);
  });
  byId("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = byId("chat-input");
    const text = input.value.trim();
    if (text && state.client) state.client.chat(text);
    input.value = "";
  });
  const canvas = byId<Canvas & { clientWidth: number }>("map");
  canvas.addEventListener("click", (ev) => {
    const scale = canvas.width / (canvas.clientWidth || canvas.width);
    const px = canvas.width / VIEW;
    const { ox, oy } = viewOrigin();
    walk(ox + Math.floor((ev.offsetX * scale) / px), oy + Math.floor((ev.offsetY * scale) / px));
  });
  const steps: Record<string, [number, number]> = {
    ArrowUp: [0, -1],
    ArrowDown: [0, 1],
    ArrowLeft: [-1, 0],
    ArrowRight: [1, 0],
    w: [0, -1],
    s: [0, 1],
    a: [-1, 0],
    d: [1, 0],
  };
  browser.document.addEventListener("keydown", (ev) => {
    const target = ev.target as El | null;
    if (target && (target.id === "chat-input" || target.id === "char-name" || target.id === "username"))
      return;
    const step = steps[ev.key];
    if (!step || !state.client) return;
    ev.preventDefault();
    // From the cell the player stands in: the map server places players at cell centres (x.5).
    walk(Math.floor(state.me.x) + step[0], Math.floor(state.me.y) + step[1]);
  });
}

/** What the page shows, for tests: `window.hybrid.state()`. */
function snapshot() {
  const c = state.client;
  return {
    screen: state.screen,
    error: state.error,
    badge: c?.badge ?? "",
    mode: c?.mode ?? "",
    map: c?.map ?? "",
    entity: c?.entity ?? 0,
    me: { ...state.me },
    meshStatus: c?.mesh?.status ?? "",
    peers: c?.connectedPeers ?? [],
    mates: c?.mesh?.mates ?? [],
    peerMoves: c?.peerMoves ?? 0,
    world: c ? [...c.world.values()] : [],
    lastSeq: c?.lastSeq ?? 0,
    seqErrors: c?.seqErrors ?? [],
    config: c?.config,
    configVersions: c?.configVersions ?? [],
    chat: [...state.chat],
  };
}

async function boot(): Promise<void> {
  wire();
  let region: Region = {};
  try {
    region = (await api("", "/v1/region", {}, "")) as Region;
  } catch {
    // Served by something other than a gateway: the query parameters must say everything.
  }
  state.loginUrl = params.get("login") ?? region.loginUrl ?? "";
  state.charUrl = params.get("char") ?? region.charUrl ?? "";
  const coord = params.get("coordinator");
  state.coordinators = coord ? coord.split(",") : (region.coordinators ?? []);
  (globalThis as unknown as { hybrid: unknown }).hybrid = {
    state: snapshot,
    walk,
    chat: (t: string) => state.client?.chat(t),
  };
  if (!state.loginUrl || !state.charUrl) {
    setStatus("this gateway does not say where the login and char servers are: add ?login=…&char=…");
    show("auth");
    return;
  }
  setStatus("not logged in");
  show("auth");
}

void boot();
