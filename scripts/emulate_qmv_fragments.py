#!/usr/bin/env python3
# emulate_qmv_fragments.py — checks, without a GPU, that qmm.cu's decode
# kernels pair weights and inputs right in both operand roles (x as the
# mma's A at MR = 16, the weights as A at MR = 8): qmv4 on the packed 4-bit
# layout of pack.go and dmv on row-major 16-bit weights, from the PTX
# fragment definitions of mma.m16n8k16, including the shuffle of the
# A-role result into stripe_store's order. The MR = 16 role, which runs on
# the GPU (TestQMatMul), checks the emulator itself. Prints the mismatches
# (all 0). Usage: python3 scripts/emulate_qmv_fragments.py
import random
from mma_m16n8k16 import mma

random.seed(7)
M = 5
codes = [[random.randrange(16) for _ in range(32)] for _ in range(64)]  # [feature][input]
x = [[random.uniform(-1, 1) for _ in range(32)] for _ in range(16)]
for r in range(M, 16): x[r] = [0.0]*32
ref = [[sum((codes[f][k]-8)*x[m][k] for k in range(32)) for f in range(64)] for m in range(16)]

def lane_word(l, j, w):
    t, c = l % 4, l // 4
    m = {0:(2*w,4*t),1:(2*w,4*t+2),2:(2*w+1,4*t),3:(2*w+1,4*t+2),4:(2*w,4*t+1),5:(2*w,4*t+3),6:(2*w+1,4*t+1),7:(2*w+1,4*t+3)}
    return {i:(8*tile+c, 16*j+inp) for i,(tile,inp) in m.items()}  # nibble -> (feature, input)
def deq(l, j, w):
    wd = lane_word(l, j, w)
    q = lambda i: (codes[wd[i][0]][wd[i][1]] - 8, wd[i])
    return [(q(0), q(4)), (q(1), q(5)), (q(2), q(6)), (q(3), q(7))]  # b[0..3]: (lo, hi) with (value, (f, k))
def xfrag(l, j, row):
    t = l % 4
    xs = [(x[row][16*j+4*t+u], (row, 16*j+4*t+u)) for u in range(4)]
    return [(xs[0], xs[1]), (xs[2], xs[3])]  # (x[4t],x[4t+1]), (x[4t+2],x[4t+3])
# labels: (feature or row, input); the products must pair equal inputs
def mma_in(afr, bfr): return mma(afr, bfr, lambda lab: lab[1])
# the A-role accumulators shuffled into stripe_store's order (aop_fragments)
# against ref: mismatches of rows < M
def aop_mismatches(acc, ref):
    bad = 0
    for l in range(32):
        t, c = l % 4, l // 4
        for j8 in range(8):
            for e in range(2):
                src = 4*(2*t+e) + (c >> 1)
                v = acc[src][j8 >> 1][2*(j8 & 1) + (c & 1)]
                if c < M and abs(v - ref[c][8*j8+2*t+e]) > 1e-9: bad += 1
    return bad

# AOP: A = weights (b[0], b[2], b[1], b[3]), B = x row c
acc = [[[0.0]*4 for _ in range(4)] for _ in range(32)]
for j in range(2):
    for wd in range(4):
        afr, bfr = [], []
        for l in range(32):
            b = deq(l, j, wd)
            afr.append((b[0], b[2], b[1], b[3]))
            c = l // 4
            xf = xfrag(l, j, c)
            bfr.append((xf[0], xf[1]))
        d = mma_in(afr, bfr)
        for l in range(32):
            for e in range(4): acc[l][wd][e] += d[l][e]
print("AOP mismatches:", aop_mismatches(acc, ref))
# old path for the emulator's own check: A = x rows c, c+8; B = weights
acc2 = [[[0.0]*4 for _ in range(8)] for _ in range(32)]
for j in range(2):
    for wd in range(4):
        for half in range(2):
            afr, bfr = [], []
            for l in range(32):
                b = deq(l, j, wd); c = l // 4
                xa, xb = xfrag(l, j, c), xfrag(l, j, c+8)
                afr.append((xa[0], xb[0], xa[1], xb[1]))
                bfr.append((b[0], b[1]) if half == 0 else (b[2], b[3]))
            d = mma_in(afr, bfr)
            for l in range(32):
                for e in range(4): acc2[l][2*wd+half][e] += d[l][e]
bad2 = 0
for l in range(32):
    t, c = l % 4, l // 4
    for j8 in range(8):
        for e in range(2):
            if c < M and abs(acc2[l][j8][e] - ref[c][8*j8+2*t+e]) > 1e-9: bad2 += 1
print("old-path mismatches:", bad2)

# dmv (16-bit weights): lane (t, c) copies row 8·j8 + c at inputs 8t…8t+7 of
# the 32-input step (cw.x … cw.w: pairs (8t, 8t+1) … (8t+6, 8t+7)); x half h
# of row c: inputs 8t+4h … 8t+4h+3. AOP: A = (cw(2w).x, cw(2w+1).x, cw(2w).y,
# cw(2w+1).y) for h = 0 (.z/.w for h = 1), B = x row c; 4 row tiles × 2 halves.
wts = [[random.uniform(-1, 1) for _ in range(32)] for _ in range(64)]
dref = [[sum(wts[f][k]*x[m][k] for k in range(32)) for f in range(64)] for m in range(16)]
def cwd(l, j8):
    t, c = l % 4, l // 4
    r = 8*j8 + c
    v = [(wts[r][8*t+u], (r, 8*t+u)) for u in range(8)]
    return [(v[0], v[1]), (v[2], v[3]), (v[4], v[5]), (v[6], v[7])]  # .x .y .z .w
def dx(l, h, row):
    t = l % 4
    v = [(x[row][8*t+4*h+u], (row, 8*t+4*h+u)) for u in range(4)]
    return (v[0], v[1]), (v[2], v[3])
dacc = [[[0.0]*4 for _ in range(4)] for _ in range(32)]
for wr in range(4):
    for h in range(2):
        afr, bfr = [], []
        for l in range(32):
            w0, w1 = cwd(l, 2*wr), cwd(l, 2*wr+1)
            afr.append((w0[2*h], w1[2*h], w0[2*h+1], w1[2*h+1]))
            b0, b1 = dx(l, h, l // 4)
            bfr.append((b0, b1))
        d = mma_in(afr, bfr)
        for l in range(32):
            for e in range(4): dacc[l][wr][e] += d[l][e]
print("dmv AOP mismatches:", aop_mismatches(dacc, dref))
