#!/usr/bin/env python3
"""ncu_regions.py — where a kernel's time goes, by code region.

Reads the SASS source page of an Nsight Compute report exported as CSV
(`ncu -i REPORT --page source --csv --print-source sass > FILE`; the report
profiled with `--section SourceCounters`) and, for each kernel in it, sums
the warp-state samples ("Warp Stall Sampling (All Samples)") over runs of
consecutive instructions that executed the same number of times — a cheap
stand-in for basic blocks: code run once a warp, once a loop iteration, or
only by the blocks that finish a split reduction each form their own runs.
Prints each run holding at least --min percent of the samples, with its
first instruction, then the busiest instructions.

    python3 ncu_regions.py mla2048_sass.csv [--min 2] [--top 10]

The eighth session found attn_mla's warp merge this way (44% of the
samples at 512 positions; docs/cuda-kernels.md).
"""
import argparse
import csv
import sys


def kernels(path):
    """Yields (name, header, rows) for each kernel table in the CSV."""
    name, header, rows = None, None, []
    with open(path, newline="") as f:
        for rec in csv.reader(f):
            if not rec:
                continue
            if rec[0] == "Kernel Name":
                if header is not None:
                    yield name, header, rows
                name, header, rows = rec[1] if len(rec) > 1 else "?", None, []
            elif header is None and "Address" in rec:
                header = rec
            elif header is not None:
                rows.append(rec)
    if header is not None:
        yield name, header, rows


def num(s):
    try:
        return float(s.replace(",", ""))
    except (ValueError, AttributeError):
        return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--min", type=float, default=2.0, help="smallest share of the samples a region printed, percent")
    ap.add_argument("--top", type=int, default=10, help="busiest instructions printed")
    a = ap.parse_args()
    for path in a.csv:
        for name, hdr, rows in kernels(path):
            try:
                i_src = hdr.index("Source")
                i_smp = hdr.index("Warp Stall Sampling (All Samples)")
                i_exe = hdr.index("Instructions Executed")
            except ValueError as e:
                print(f"{path}: {name}: column missing ({e}); profile with --section SourceCounters", file=sys.stderr)
                continue
            total = sum(num(r[i_smp]) for r in rows) or 1.0
            executed = sum(num(r[i_exe]) for r in rows)
            print(f"== {name} ({path}): {total:.0f} samples, {executed:.0f} warp instructions executed, {len(rows)} SASS lines")
            runs = []  # [executed count, samples, instructions executed, first line, last line]
            for k, r in enumerate(rows):
                ex, sm = num(r[i_exe]), num(r[i_smp])
                if runs and runs[-1][0] == ex:
                    runs[-1][1] += sm
                    runs[-1][2] += ex
                    runs[-1][4] = k
                else:
                    runs.append([ex, sm, ex, k, k])
            for ex, sm, ins, k0, k1 in runs:
                if 100 * sm / total >= a.min:
                    src = rows[k0][i_src].strip()[:60]
                    print(f"  lines {k0:5d}-{k1:5d}  {100 * sm / total:5.1f}% of samples  executed {ex:>9.0f}× each  ({ins:.0f} in all)  {src}")
            print("  busiest instructions:")
            for r in sorted(rows, key=lambda r: -num(r[i_smp]))[: a.top]:
                print(f"    {100 * num(r[i_smp]) / total:5.1f}%  executed {num(r[i_exe]):>9.0f}×  {r[i_src].strip()[:70]}")


if __name__ == "__main__":
    main()
