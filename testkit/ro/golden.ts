// Golden byte vectors of the RO protocol at PACKETVER 20101124, spelled out field by field from
// the documented layouts (shared/notes/ro-protocol.md; rAthena's char_mmo_char_tobuf and
// packet_* structs for this version). Both the server's codec (platform/protocol/ro) and the
// independent test client (client.ts) must produce and read exactly these bytes.
import { enc } from "./client.ts";

const hex = (...parts: string[]) => Buffer.from(parts.join("").replace(/\s+/g, ""), "hex");
const u8 = (v: number) => v.toString(16).padStart(2, "0");
const u16 = (v: number) => u8(v & 0xff) + u8(v >>> 8);
const u32 = (v: number) => u16(v & 0xffff) + u16(v >>> 16);
/** A fixed-size latin1 field, NUL-padded. */
const fixed = (s: string, size: number) =>
  Buffer.from(s, "latin1")
    .toString("hex")
    .padEnd(size * 2, "0");
const text0 = (s: string) => `${Buffer.from(s, "latin1").toString("hex")}00`;

export interface GoldenVector {
  name: string;
  dir: "c2s" | "s2c";
  bytes: Buffer;
  /** The packet as the server codec's encode() takes it and decode() returns it. */
  // biome-ignore lint/suspicious/noExplicitAny: vectors hold packets of every type
  value: any;
  /** The test client's own encoding (client-to-server packets). */
  client?: () => Buffer;
}

const CHAR_BLOCK_HEX = [
  u32(150001), // 0   char_id
  u32(1234), //   4   base_exp
  u32(500), //    8   zeny
  u32(7), //      12  job_exp
  u32(3), //      16  job_level
  u32(0), //      20  opt1
  u32(0), //      24  opt2
  u32(0), //      28  option
  u32(0), //      32  karma
  u32(0), //      36  manner
  u16(2), //      40  status_point
  u32(400), //    42  hp (u32 from PACKETVER 20081217)
  u32(420), //    46  max_hp
  u16(11), //     50  sp
  u16(12), //     52  max_sp
  u16(150), //    54  walk speed
  u16(0), //      56  class (novice)
  u16(5), //      58  hair style
  u16(0), //      60  weapon
  u16(2), //      62  base_level
  u16(0), //      64  skill_point
  u16(0), //      66  head_bottom
  u16(0), //      68  shield
  u16(0), //      70  head_top
  u16(0), //      72  head_mid
  u16(3), //      74  hair_color
  u16(0), //      76  clothes_color
  fixed("Golden Knight", 24), // 78 name
  "050509050509", //   102 str agi vit int dex luk
  u16(1), //      108 slot
  u16(1), //      110 rename flag (1: not renamed)
  fixed("prontera.gat", 16), // 112 last map
  u32(0), //      128 delete date
].join("");

const CHAR_BLOCK_VALUE = {
  charId: 150001,
  baseExp: 1234,
  zeny: 500,
  jobExp: 7,
  jobLevel: 3,
  opt1: 0,
  opt2: 0,
  option: 0,
  karma: 0,
  manner: 0,
  statusPoint: 2,
  hp: 400,
  maxHp: 420,
  sp: 11,
  maxSp: 12,
  speed: 150,
  job: 0,
  hair: 5,
  weapon: 0,
  baseLevel: 2,
  skillPoint: 0,
  headBottom: 0,
  shield: 0,
  headTop: 0,
  headMid: 0,
  hairColor: 3,
  clothesColor: 0,
  name: "Golden Knight",
  str: 5,
  agi: 5,
  vit: 9,
  int: 5,
  dex: 5,
  luk: 9,
  slot: 1,
  renamed: 1,
  lastMap: "prontera.gat",
  deleteDate: 0,
};

const ACTOR_HEAD_VALUE = {
  objectType: 5,
  id: 100000042,
  speed: 400,
  bodyState: 0,
  healthState: 0,
  effectState: 0,
  job: 1002,
  head: 0,
  weapon: 0,
  accessory: 0,
};
const ACTOR_HEAD_HEX = [
  u8(5), //        4  object type (5: monster)
  u32(100000042), // 5  id
  u16(400), //     9  speed (ms per cell)
  u16(0), //       11 body state
  u16(0), //       13 health state
  u32(0), //       15 effect state
  u16(1002), //    19 job (poring)
  u16(0), //       21 head
  u32(0), //       23 weapon
  u16(0), //       27 accessory
];
const ACTOR_LOOKS_VALUE = {
  accessory2: 0,
  accessory3: 0,
  headPalette: 0,
  bodyPalette: 0,
  headDir: 0,
  robe: 0,
  guildId: 0,
  emblemVersion: 0,
  honor: 0,
  virtue: 0,
  pkMode: 0,
  sex: 0,
};
const ACTOR_LOOKS_HEX = [
  u16(0), // accessory2
  u16(0), // accessory3
  u16(0), // head palette
  u16(0), // body palette
  u16(0), // head direction
  u16(0), // robe (from PACKETVER 20101124)
  u32(0), // guild id
  u16(0), // emblem version
  u16(0), // honor
  u32(0), // virtue
  u8(0), //  PK mode
  u8(0), //  sex
];

// Position (156, 191) facing 0: 156<<14 | 191<<4 = 0x270bf0.
const POS_156_191 = "270bf0";
// Move (100, 200) -> (103, 198), sub-cell 8/8: bytes worked out by hand from the 10-bit layout.
const MOVE_100_200_103_198 = "190c819cc688";
const MOVE_VALUE = { x0: 100, y0: 200, x1: 103, y1: 198, sx: 8, sy: 8 };

export const GOLDEN: GoldenVector[] = [
  {
    name: "0x0064 login",
    dir: "c2s",
    bytes: hex("6400", u32(20101124), fixed("golden_user", 24), fixed("plain pass", 24), u8(22)),
    value: {
      type: "login",
      version: 20101124,
      username: "golden_user",
      password: "plain pass",
      clientType: 22,
    },
    client: () => enc.login("golden_user", "plain pass", 20101124, 22),
  },
  {
    name: "0x0069 login ok, one char server",
    dir: "s2c",
    bytes: hex(
      "6900",
      u16(47 + 32),
      u32(0x11223344), // login_id1
      u32(2000001), //     account_id
      u32(0x55667788), // login_id2
      u32(0), //           last ip
      fixed("", 26), //    last login time
      u8(1), //            sex
      "7f000001", //       char server ip 127.0.0.1, network order
      u16(6121), //        port
      fixed("demo", 20), // name
      u16(3), //           users
      u16(0), //           type
      u16(0), //           new
    ),
    value: {
      type: "loginOk",
      loginId1: 0x11223344,
      accountId: 2000001,
      loginId2: 0x55667788,
      lastIp: 0,
      lastLogin: "",
      sex: 1,
      items: [{ ip: "127.0.0.1", port: 6121, name: "demo", users: 3, type: 0, isNew: 0 }],
    },
  },
  {
    name: "0x006a login refused",
    dir: "s2c",
    bytes: hex("6a00", u8(1), fixed("", 20)),
    value: { type: "loginRefused", error: 1, blockDate: "" },
  },
  {
    name: "0x0065 char enter",
    dir: "c2s",
    bytes: hex("6500", u32(2000001), u32(0x11223344), u32(0x55667788), u16(0), u8(1)),
    value: {
      type: "charEnter",
      accountId: 2000001,
      loginId1: 0x11223344,
      loginId2: 0x55667788,
      unknown: 0,
      sex: 1,
    },
    client: () => enc.charEnter(2000001, 0x11223344, 0x55667788, 1),
  },
  {
    name: "0x006b char list, one character",
    dir: "s2c",
    bytes: hex("6b00", u16(27 + 132), u8(9), u8(9), u8(9), fixed("", 20), CHAR_BLOCK_HEX),
    value: { type: "charList", maxSlots: 9, availableSlots: 9, premiumSlots: 9, items: [CHAR_BLOCK_VALUE] },
  },
  {
    name: "0x006d char created",
    dir: "s2c",
    bytes: hex("6d00", CHAR_BLOCK_HEX),
    value: { type: "charCreated", ...CHAR_BLOCK_VALUE },
  },
  {
    name: "0x0067 char create",
    dir: "c2s",
    bytes: hex("6700", fixed("Golden Knight", 24), "050509050509", u8(1), u16(3), u16(5)),
    value: {
      type: "charCreate",
      name: "Golden Knight",
      str: 5,
      agi: 5,
      vit: 9,
      int: 5,
      dex: 5,
      luk: 9,
      slot: 1,
      hairColor: 3,
      hairStyle: 5,
    },
    client: () => enc.charCreate("Golden Knight", [5, 5, 9, 5, 5, 9], 1, 3, 5),
  },
  {
    name: "0x006e char create failed",
    dir: "s2c",
    bytes: hex("6e00", u8(0)),
    value: { type: "charCreateFailed", error: 0 },
  },
  {
    name: "0x0066 char select",
    dir: "c2s",
    bytes: hex("6600", u8(1)),
    value: { type: "charSelect", slot: 1 },
    client: () => enc.charSelect(1),
  },
  {
    name: "0x0071 map server address",
    dir: "s2c",
    bytes: hex("7100", u32(150001), fixed("prontera.gat", 16), "0a000005", u16(30512)),
    value: { type: "mapServer", charId: 150001, mapName: "prontera.gat", ip: "10.0.0.5", port: 30512 },
  },
  {
    name: "0x0436 map enter",
    dir: "c2s",
    bytes: hex("3604", u32(2000001), u32(150001), u32(0x11223344), u32(987654), u8(1)),
    value: {
      type: "mapEnter",
      accountId: 2000001,
      charId: 150001,
      loginId1: 0x11223344,
      clientTick: 987654,
      sex: 1,
    },
    client: () => enc.mapEnter(2000001, 150001, 0x11223344, 987654, 1),
  },
  {
    name: "0x0283 account id",
    dir: "s2c",
    bytes: hex("8302", u32(2000001)),
    value: { type: "accountId", accountId: 2000001 },
  },
  {
    name: "0x02eb map accept",
    dir: "s2c",
    bytes: hex("eb02", u32(123456), POS_156_191, u8(5), u8(5), u16(0)),
    value: { type: "mapAccept", tick: 123456, pos: { x: 156, y: 191, dir: 0 }, xSize: 5, ySize: 5, font: 0 },
  },
  {
    name: "0x007d load end",
    dir: "c2s",
    bytes: hex("7d00"),
    value: { type: "loadEnd" },
    client: () => enc.loadEnd(),
  },
  {
    name: "0x0360 tick sync",
    dir: "c2s",
    bytes: hex("6003", u32(5000)),
    value: { type: "tickSync", clientTick: 5000 },
    client: () => enc.tickSync(5000),
  },
  {
    name: "0x007f tick reply",
    dir: "s2c",
    bytes: hex("7f00", u32(777)),
    value: { type: "tickReply", serverTick: 777 },
  },
  {
    name: "0x035f walk",
    dir: "c2s",
    bytes: hex("5f03", POS_156_191),
    value: { type: "walk", dest: { x: 156, y: 191, dir: 0 } },
    client: () => enc.walk(156, 191),
  },
  {
    name: "0x0087 own move",
    dir: "s2c",
    bytes: hex("8700", u32(1000), MOVE_100_200_103_198),
    value: { type: "ownMove", tick: 1000, move: MOVE_VALUE },
  },
  {
    name: "0x0086 actor moves",
    dir: "s2c",
    bytes: hex("8600", u32(100000042), MOVE_100_200_103_198, u32(1000)),
    value: { type: "actorMove", id: 100000042, move: MOVE_VALUE, tick: 1000 },
  },
  {
    name: "0x0088 move stopped",
    dir: "s2c",
    bytes: hex("8800", u32(2000001), u16(101), u16(199)),
    value: { type: "moveStop", id: 2000001, x: 101, y: 199 },
  },
  {
    name: "0x07f9 actor standing",
    dir: "s2c",
    bytes: hex(
      "f907",
      u16(65),
      ...ACTOR_HEAD_HEX,
      ...ACTOR_LOOKS_HEX,
      POS_156_191,
      u8(5),
      u8(5),
      u8(0),
      u16(1),
      u16(0),
    ),
    value: {
      type: "actorStand",
      ...ACTOR_HEAD_VALUE,
      ...ACTOR_LOOKS_VALUE,
      pos: { x: 156, y: 191, dir: 0 },
      xSize: 5,
      ySize: 5,
      state: 0,
      level: 1,
      font: 0,
    },
  },
  {
    name: "0x07f8 actor appears",
    dir: "s2c",
    bytes: hex(
      "f807",
      u16(64),
      ...ACTOR_HEAD_HEX,
      ...ACTOR_LOOKS_HEX,
      POS_156_191,
      u8(5),
      u8(5),
      u16(1),
      u16(0),
    ),
    value: {
      type: "actorSpawn",
      ...ACTOR_HEAD_VALUE,
      ...ACTOR_LOOKS_VALUE,
      pos: { x: 156, y: 191, dir: 0 },
      xSize: 5,
      ySize: 5,
      level: 1,
      font: 0,
    },
  },
  {
    name: "0x07f7 actor walking in view",
    dir: "s2c",
    bytes: hex(
      "f707",
      u16(71),
      ...ACTOR_HEAD_HEX,
      u32(4242), // move start time, after the accessory
      ...ACTOR_LOOKS_HEX,
      MOVE_100_200_103_198,
      u8(5),
      u8(5),
      u16(1),
      u16(0),
    ),
    value: {
      type: "actorWalking",
      ...ACTOR_HEAD_VALUE,
      moveStartTime: 4242,
      ...ACTOR_LOOKS_VALUE,
      move: MOVE_VALUE,
      xSize: 5,
      ySize: 5,
      level: 1,
      font: 0,
    },
  },
  {
    name: "0x0080 actor vanishes (died)",
    dir: "s2c",
    bytes: hex("8000", u32(100000042), u8(1)),
    value: { type: "vanish", id: 100000042, how: 1 },
  },
  {
    name: "0x0368 name request",
    dir: "c2s",
    bytes: hex("6803", u32(100000042)),
    value: { type: "nameRequest", id: 100000042 },
    client: () => enc.nameRequest(100000042),
  },
  {
    name: "0x0095 name reply",
    dir: "s2c",
    bytes: hex("9500", u32(100000042), fixed("poring", 24)),
    value: { type: "nameReply", id: 100000042, name: "poring" },
  },
  {
    name: "0x00f3 public chat",
    dir: "c2s",
    bytes: hex("f300", u16(4 + 17), text0("Golden : hi all!")),
    value: { type: "chat", text: "Golden : hi all!" },
    client: () => enc.chat("Golden : hi all!"),
  },
  {
    name: "0x008d chat from another",
    dir: "s2c",
    bytes: hex("8d00", u16(8 + 10), u32(100000007), text0("Bob : yo!")),
    value: { type: "chatFrom", id: 100000007, text: "Bob : yo!" },
  },
  {
    name: "0x008e own chat echo",
    dir: "s2c",
    bytes: hex("8e00", u16(4 + 17), text0("Golden : hi all!")),
    value: { type: "chatSelf", text: "Golden : hi all!" },
  },
  {
    name: "0x009a broadcast",
    dir: "s2c",
    bytes: hex("9a00", u16(4 + 14), text0("Osiris rises!")),
    value: { type: "broadcast", text: "Osiris rises!" },
  },
  {
    name: "0x0437 attack",
    dir: "c2s",
    bytes: hex("3704", u32(100000042), u8(7)),
    value: { type: "attack", target: 100000042, action: 7 },
    client: () => enc.attack(100000042, 7),
  },
  {
    name: "0x0118 stop attack",
    dir: "c2s",
    bytes: hex("1801"),
    value: { type: "stopAttack" },
    client: () => enc.stopAttack(),
  },
  {
    name: "0x02e1 damage",
    dir: "s2c",
    bytes: hex(
      "e102",
      u32(2000001),
      u32(100000042),
      u32(9000),
      u32(800),
      u32(300),
      u32(17),
      u16(1),
      u8(0),
      u32(0),
    ),
    value: {
      type: "damage",
      src: 2000001,
      target: 100000042,
      tick: 9000,
      srcSpeed: 800,
      dmgSpeed: 300,
      damage: 17,
      div: 1,
      action: 0,
      damage2: 0,
    },
  },
  {
    name: "0x07f6 experience gained",
    dir: "s2c",
    bytes: hex("f607", u32(2000001), u32(2), u16(1), u16(0)),
    value: { type: "expGain", id: 2000001, amount: 2, varId: 1, expType: 0 },
  },
  {
    name: "0x00b1 base experience",
    dir: "s2c",
    bytes: hex("b100", u16(1), u32(1236)),
    value: { type: "longParam", param: 1, value: 1236 },
  },
  {
    name: "0x00b0 hp",
    dir: "s2c",
    bytes: hex("b000", u16(5), u32(388)),
    value: { type: "param", param: 5, value: 388 },
  },
  {
    name: "0x0091 change map",
    dir: "s2c",
    bytes: hex("9100", fixed("prt_fild08.gat", 16), u16(170), u16(375)),
    value: { type: "changeMap", mapName: "prt_fild08.gat", x: 170, y: 375 },
  },
  {
    name: "0x018a quit",
    dir: "c2s",
    bytes: hex("8a01", u16(0)),
    value: { type: "quit", kind: 0 },
    client: () => enc.quit(),
  },
  { name: "0x018b quit ack", dir: "s2c", bytes: hex("8b01", u16(0)), value: { type: "quitAck", result: 0 } },
  {
    name: "0x00b2 back to char select",
    dir: "c2s",
    bytes: hex("b200", u8(1)),
    value: { type: "restart", kind: 1 },
    client: () => enc.restart(1),
  },
  {
    name: "0x00b3 restart ack",
    dir: "s2c",
    bytes: hex("b300", u8(1)),
    value: { type: "restartAck", kind: 1 },
  },
];
