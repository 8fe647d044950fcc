#!/usr/bin/env python3
"""Joins marlin's quantized-matmul times (lines "qmm FORMAT K N M µs GB/s"
and "d2dcopy GB/s" from TestQMatMulSpeed) with torch's fp16 F.linear times
of the same run (lines "torch K N M µs", "torchcopy GB/s" from
torch_linear.py) into a markdown table of speedups against the bars (the bar columns use marlin's times without
programmatic dependent launch, each call on its own; the last column is the
same loop with it, where each call's weight prefetch overlaps the previous
call's end, as consecutive decode matmuls do):
≥ 3.0× at M = 1, 4, 16; ≥ 2.0× at M = 64; ≥ 0.8× at M = 512, 2048; and at
M = 1 bandwidth on quantized bytes ≥ 80% of the device-to-device copy.

usage: perf_table.py LOG... (reads every line of every file)
"""
import sys

ours, torch, pdl = {}, {}, {}
copy = tcopy = None
device = "?"
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        f = line.split()
        if not f:
            continue
        if f[0] == "qmm" and len(f) == 7:
            ours[(f[1], int(f[2]), int(f[3]), int(f[4]))] = (float(f[5]), float(f[6]))
        elif f[0] == "qmmpdl" and len(f) == 6:
            pdl[(f[1], int(f[2]), int(f[3]), int(f[4]))] = float(f[5])
        elif f[0] == "torch" and len(f) == 5:
            torch[(int(f[1]), int(f[2]), int(f[3]))] = float(f[4])
        elif f[0] == "d2dcopy":
            copy = float(f[1])
        elif f[0] == "torchcopy":
            tcopy = float(f[1])
        elif f[0] == "torchdevice":
            device = " ".join(f[1:])


def bar(M, fmt=""):
    """The speedup a cell must reach, or None where no bar applies."""
    # EXL3 (issue 8, bar 5): ≥ 2.5× at K = 4 and ≥ 4× at K = 2 for M ≤ 16;
    # other K are reported without a bar
    if fmt.startswith("exl3-"):
        return {"exl3-k4": 2.5, "exl3-k2": 4.0}.get(fmt[:7]) if M <= 16 else None
    # issue 5, bar 2: INT4 g128 and FP4 g32 at M = 1, 4, 16, 64, 512, 2048;
    # the other formats and sizes are reported without a bar
    if fmt not in ("int4-g128", "fp4-g32"):
        return None
    return {1: 3.0, 4: 3.0, 16: 3.0, 64: 2.0, 512: 0.8, 2048: 0.8}.get(M)

print("device: %s; device-to-device copy %s GB/s (marlin), %s GB/s (torch)" % (device, copy, tcopy))
print()
print("| format | K×N | M | marlin µs | torch fp16 µs | speedup | bar | GB/s | % of copy | back-to-back with PDL µs (speedup) |")
print("|---|---|---|---|---|---|---|---|---|---|")
fails = barred = 0
for (fmt, K, N, M), (us, gbs) in sorted(ours.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
    t = torch.get((K, N, M))
    sp = t / us if t else float("nan")
    b = bar(M, fmt)
    ok = b is None or t is not None and sp >= b
    share = ""
    if M == 1 and copy and not fmt.startswith("exl3-"):
        share = "%.0f%%" % (100 * gbs / copy)
        ok = ok and (b is None or gbs >= 0.8 * copy)
    barred += b is not None
    fails += not ok
    p = pdl.get((fmt, K, N, M))
    ps = "%.1f (%.2f×)" % (p, t / p) if p and t else ""
    cell = "—" if b is None else "%s%.1f×" % ("✓ " if ok else "✗ ", b)
    print("| %s | %d×%d | %d | %.1f | %s | %.2f× | %s | %.0f | %s | %s |" % (
        fmt, K, N, M, us, "%.1f" % t if t else "—", sp, cell, gbs, share, ps))
print()
print("%d of %d cells with a bar miss it (%d cells without one)" % (fails, barred, len(ours) - barred))
