import { describe, expect, it } from "vitest";
import { holdCandidates } from "./mesh.ts";

describe("an offer's candidates held back", () => {
  it("leaves the SDP without candidates and turns them into trickled candidates of its section", () => {
    const sdp = [
      "v=0",
      "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
      "a=mid:0",
      "a=ice-ufrag:abcd",
      "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
      "a=candidate:2 1 udp 2122194687 192.0.2.2 50001 typ host",
      "a=end-of-candidates",
      "",
    ].join("\r\n");
    const { sdp: bare, candidates } = holdCandidates(sdp);
    expect(bare).not.toContain("candidate");
    expect(bare).toContain("a=ice-ufrag:abcd");
    expect(candidates.map((c) => JSON.parse(c))).toEqual([
      { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 },
      { candidate: "candidate:2 1 udp 2122194687 192.0.2.2 50001 typ host", sdpMid: "0", sdpMLineIndex: 0 },
    ]);
  });
});
