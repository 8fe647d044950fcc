#!/usr/bin/env python3
"""logits_diff.py REF.json OTHER.json ... — compare `marlin logits --json`
outputs (the same ids and positions) position by position: for each OTHER,
the largest |Δlogit| relative to REF's largest |logit| at that position,
and the count of values that are not finite (NaN or ±Inf, which `marlin
logits` prints as null). Exit status 1 when any OTHER has a non-finite
value, is unreadable, or differs by more than --tol (default 2e-3, the GPU
tests' bound for fp16-rounded products) at some position."""
import json
import math
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)["logits"]
    except Exception as e:  # an empty file: the run failed
        print(f"{path}: unreadable ({e})")
        return None


def main(argv):
    tol = 2e-3
    if argv and argv[0].startswith("--tol="):
        tol = float(argv[0].split("=", 1)[1])
        argv = argv[1:]
    if len(argv) < 2:
        print(__doc__)
        return 2
    ref, bad = load(argv[0]), False
    if ref is None:
        return 1
    for path in argv[1:]:
        other = load(path)
        if other is None or len(other) != len(ref):
            bad = True
            continue
        nonfinite, rows = 0, []
        for a, b in zip(ref, other):
            top = max(abs(x) for x in a if x is not None)
            nonfinite += sum(1 for y in b if y is None)
            d = max((abs(x - y) for x, y in zip(a, b) if x is not None and y is not None), default=0.0)
            rows.append(d / top if top else math.inf)
        worst = max(rows)
        ok = nonfinite == 0 and worst <= tol
        bad = bad or not ok
        print(f"{path}: {'ok' if ok else 'DIFFERS'} against {argv[0]}: worst {worst:.3g} of the largest logit, "
              f"{nonfinite} non-finite; by position " + " ".join(f"{r:.2g}" for r in rows))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
