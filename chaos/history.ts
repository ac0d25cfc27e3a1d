// Reading a flag store's history (every put, in revision order, from revision 1) for the two
// invariants of fenced publishing: the pointer's epochs only grow, and every pointer and zone
// document was written under the fencing token current at that revision (no two publishers).
import type { IKeyValue } from "etcd3";
import { type Layout, layout, parsePointer } from "../platform/flags/layout.ts";

/** The store's history from revision 1: pointer epochs grow; every write holds the current fence. */
export class HistoryCheck {
  readonly violations: string[] = [];
  pointers = 0;
  private fenceRev = "";
  private lastPublish = "";
  private lastEpoch = 0;
  private readonly l: Layout;

  constructor(prefix: string) {
    this.l = layout(prefix);
  }

  onPut(kv: IKeyValue): void {
    const key = kv.key.toString();
    const rev = String(kv.mod_revision);
    if (key === this.l.fence) {
      this.fenceRev = rev;
      return;
    }
    const value = kv.value.toString();
    const isPointer = key === this.l.pointer;
    if (!isPointer && !key.startsWith(this.l.zonesPrefix())) return;
    const publish = isPointer ? parsePointer(key, value).publish : /"publish":"([^"]+)"/.exec(value)?.[1];
    const token = publish?.split("-")[1]?.replace(/^0+/, "");
    if (token !== this.fenceRev)
      this.violations.push(
        `${key} written at revision ${rev} under fencing token ${token}, while the current token was ${this.fenceRev}`,
      );
    if (!isPointer) return;
    this.pointers++;
    const epoch = this.l.epochOfPublish(publish!) ?? 0;
    if (epoch <= this.lastEpoch || publish! <= this.lastPublish)
      this.violations.push(`pointer went from ${this.lastPublish} to ${publish} at revision ${rev}`);
    this.lastEpoch = Math.max(this.lastEpoch, epoch);
    if (publish! > this.lastPublish) this.lastPublish = publish!;
  }
}
