#!/usr/bin/env python3
"""torch fp16 F.linear (cuBLAS) on the shapes of the quantized-matmul bar,
timed like TestQMatMulSpeed times marlin's kernels: CUDA events around many
calls, weights rotated among copies that together exceed the L2 cache, the
median of several repeats. Also a device-to-device copy (bytes read +
written). Prints lines "torch K N M µs" and "torchcopy GB/s" for
perf_table.py to join with marlin's figures of the same run.

usage: python3 torch_linear.py [--shapes 4096x14336,...] [--m 1,4,16,32,64,512,2048]
"""
import argparse
import os
import statistics

import torch
import torch.nn.functional as F


def timeit(fn, reps, repeats=5):
    """Median over `repeats` of the mean device time (µs) of `reps` calls."""
    fn(0)
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(reps):
            fn(i)
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b) * 1e3 / reps)
    return statistics.median(out)


def main():
    ap = argparse.ArgumentParser()
    # the shapes of TestQMatMulSpeed: MARLIN_QMM_SHAPES, as there, or its four
    ap.add_argument("--shapes", default=os.environ.get("MARLIN_QMM_SHAPES") or "4096x14336,14336x4096,8192x28672,28672x8192")
    ap.add_argument("--m", default=os.environ.get("MARLIN_QMM_M") or "1,4,16,32,64,512,2048")
    args = ap.parse_args()
    dev = torch.device("cuda")
    print("torchdevice", torch.cuda.get_device_name(0).replace(" ", "_"), torch.__version__)
    n = 1 << 28
    src = torch.empty(n, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    t = timeit(lambda i: dst.copy_(src), 10)
    print("torchcopy %.1f" % (2 * n / (t * 1e-6) / 1e9))
    del src, dst
    for shape in args.shapes.split(","):
        K, N = map(int, shape.split("x"))
        nbuf = max(2, -(-(200 << 20) // (2 * K * N)))  # copies totalling ≥ 200 MB
        ws = [torch.randn(N, K, dtype=torch.float16, device=dev) * 0.02 for _ in range(nbuf)]
        for M in map(int, args.m.split(",")):
            x = torch.randn(M, K, dtype=torch.float16, device=dev)
            t0 = timeit(lambda i: F.linear(x, ws[i % nbuf]), 1, 1)
            reps = max(3, min(20 * nbuf, int(50e3 / max(t0, 1))))
            t = timeit(lambda i: F.linear(x, ws[i % nbuf]), reps)
            print("torch %d %d %d %.2f" % (K, N, M, t), flush=True)
        del ws
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
