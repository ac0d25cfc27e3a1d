// Character name rules (after rAthena's NAME_LENGTH of 24 bytes with its terminator): 4 to 23
// characters; letters, digits, single spaces, underscores and hyphens; starting with a letter
// and not ending with a space; no names that pose as staff or the server. Uniqueness, regardless
// of case, is the database's job (a unique index on lower(name)), not this module's.

const SHAPE = /^[A-Za-z][A-Za-z0-9 _-]{2,21}[A-Za-z0-9_-]$/;
const RESERVED = new Set([
  "admin",
  "administrator",
  "gamemaster",
  "moderator",
  "server",
  "system",
  "support",
  "staff",
]);
const STAFF_PREFIX = /^(gm|admin|mod)[ _-]/i;

/** Undefined when the name is acceptable; otherwise why not, to show the player. */
export function checkCharacterName(name: string): string | undefined {
  if (name.length < 4 || name.length > 23) return "must be 4 to 23 characters long";
  if (!SHAPE.test(name)) {
    return "may contain letters, digits, spaces, underscores and hyphens, must start with a letter and not end with a space";
  }
  if (name.includes("  ")) return "may not contain two spaces in a row";
  if (RESERVED.has(name.toLowerCase()) || STAFF_PREFIX.test(name)) return "is reserved";
  return undefined;
}
