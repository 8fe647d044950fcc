#!/usr/bin/env python3
"""sass_scan.py — what the compiled kernels issue, read from their SASS.

Build the sm_90 image and disassemble it (no GPU needed; NVRTC and
cuobjdump from the CUDA toolkit):

    MARLIN_CUBIN_OUT=/tmp/cubin go test ./backend/cuda -run TestCompileKernels -count=1
    for f in /tmp/cubin/part-*.cubin; do cuobjdump -sass $f; done > /tmp/marlin.sass
    python3 scripts/sass_scan.py /tmp/marlin.sass [--kernel REGEX]

For each kernel it prints the instruction count and the instructions that
usually mean wasted issue in a hot loop: predicated tensor-core mma (an
accumulator indexed at run time, as dmv's wide order once did: 128 HMMA
for 16), local-memory loads and stores (spills or arrays the compiler
could not keep in registers), and the reciprocal of an integer division
(a run-time division or modulo). Kernels with any of them come first.
For Hopper's warpgroup MMA (an sm_90a image: NVRTC 12 or newer) it also
counts HGMMA, the waits that drain all of them (WARPGROUP.DEPBAR.LE gsb0,
0x0: one after every HGMMA is ptxas serialising them) and full memory
barriers (MEMBAR: fence.proxy.async compiles to one).
"""
import argparse
import re
import sys
from collections import defaultdict

OP = re.compile(r"^\s+/\*[0-9a-f]+\*/\s+(@!?U?P[0-9T]\s+)?([A-Z0-9_.]+)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sass", help="cuobjdump -sass output")
    ap.add_argument("--kernel", default="", help="only kernels whose name matches this regex")
    a = ap.parse_args()
    want = re.compile(a.kernel)
    stats = defaultdict(lambda: defaultdict(int))
    fn = None
    with open(a.sass) as f:
        for line in f:
            if "Function :" in line:
                fn = line.split("Function :")[1].strip()
                continue
            m = OP.match(line)
            if fn is None or not m or not want.search(fn):
                continue
            pred, op = m.group(1), m.group(2)
            s = stats[fn]
            s["instructions"] += 1
            base = op.split(".")[0]
            if base == "HMMA":
                s["hmma"] += 1
                if pred:
                    s["hmma predicated"] += 1
            elif base == "HGMMA":
                s["hgmma"] += 1
            elif op.startswith("WARPGROUP.DEPBAR") and "gsb0, 0x0" in line:
                s["wgmma drain"] += 1
            elif base == "MEMBAR":
                s["membar"] += 1
            elif base in ("LDL", "STL"):
                s["local"] += 1
            elif op.startswith("MUFU.RCP") and not op.startswith("MUFU.RCP64"):
                s["int division"] += 1  # (float reciprocals show up here too)
    if not stats:
        print("no kernels found", file=sys.stderr)
        sys.exit(1)
    flagged = lambda s: s["hmma predicated"] + s["local"]
    print(f"{'kernel':40s} {'instr':>7s} {'hmma':>5s} {'pred':>5s} {'local':>6s} {'rcp':>4s} {'hgmma':>6s} {'drain':>6s} {'membar':>7s}")
    for fn, s in sorted(stats.items(), key=lambda kv: (-flagged(kv[1]), kv[0])):
        print(f"{fn:40s} {s['instructions']:7d} {s['hmma']:5d} {s['hmma predicated']:5d} {s['local']:6d} {s['int division']:4d}"
              f" {s['hgmma']:6d} {s['wgmma drain']:6d} {s['membar']:7d}")


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # (piped into head)
        pass
