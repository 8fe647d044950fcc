#!/usr/bin/env python3
# emulate_tc_qgemm.py — emulates qmm.cu's tc_qgemm lane by lane (its block,
# warp and fragment indexing, the packed layout of pack.go, the mma.m16n8k16
# fragment definitions) on a small random INT4 weight with zero points,
# shapes not multiples of the tiles, against a plain product; checks without
# a GPU that every output is written once and right. Prints the mismatches (0).
# Usage: python3 scripts/emulate_tc_qgemm.py   (~1 min)
import random
from mma_m16n8k16 import mma
random.seed(3)
N, K, M, G = 200, 96, 37, 32   # N not a multiple of 128, M not of 64
ASYM = True
ntiles = (N + 63) // 64; spt = K // 32; groups = K // G; gsteps = G // 32
q = [[random.randrange(16) for _ in range(K)] for _ in range(ntiles*64)]
zz = [[random.randrange(16) if ASYM else 8 for _ in range(groups)] for _ in range(ntiles*64)]
sc = [[random.uniform(0.5, 2) if f < N else 0.0 for _ in range(groups)] for f in range(ntiles*64)]
x = [[random.uniform(-1, 1) for _ in range(K)] for _ in range(M)]
ref = [[sum((q[f][k]-zz[f][k//G])*sc[f][k//G]*x[m][k] for k in range(K)) for f in range(N)] for m in range(M)]
# packed words: word(nt, s16, lane, w) -> list of 8 (feature, input) for codes 0..7
def word(nt, s16, l, w):
    t, c = l % 4, l // 4
    m = {0:(2*w,4*t),1:(2*w,4*t+2),2:(2*w+1,4*t),3:(2*w+1,4*t+2),4:(2*w,4*t+1),5:(2*w,4*t+3),6:(2*w+1,4*t+1),7:(2*w+1,4*t+3)}
    return [(64*nt + 8*tile + c, 16*s16 + inp) for i,(tile,inp) in sorted(m.items())]
def scale(nt, g, c, j8): return sc[64*nt + 8*j8 + c][g]
def zero(nt, g, c, j8): return zz[64*nt + 8*j8 + c][g]
y = [[None]*N for _ in range(M)]
for bx in range((ntiles + 1)//2):
    for by in range((M + 63)//64):
        nt0, m0 = 2*bx, 64*by
        acc = {(wf, wm, l): [[[0.0]*4 for _ in range(4)] for _ in range(2)] for wf in range(4) for wm in range(2) for l in range(32)}
        for s in range(spt):
            g = s // gsteps
            for wf in range(4):
                qq, wd0 = wf >> 1, 2*(wf & 1)
                nt = min(nt0 + qq, ntiles - 1)
                for wm in range(2):
                    for j in range(2):
                        for rt in range(2):
                            A, Bs = [], [[] for _ in range(4)]
                            for l in range(32):
                                t, c = l % 4, l // 4
                                ws = word(nt, 2*s + j, l, wd0 + rt)
                                # dequantised codes: code i -> (value, input)
                                val = []
                                for (f, k) in ws:
                                    j8 = (f - 64*nt) // 8
                                    val.append(((q[f][k] - zero(nt, g, c, j8)) * scale(nt, g, c, j8), k))
                                b = [(val[0], val[4]), (val[1], val[5]), (val[2], val[6]), (val[3], val[7])]
                                A.append((b[0], b[2], b[1], b[3]))
                                for nn in range(4):
                                    r = m0 + 32*wm + 8*nn + c
                                    xv = [(x[r][32*s + 16*j + 4*t + u] if r < M else 0.0, 16*(2*s+j) + 4*t + u) for u in range(4)]
                                    Bs[nn].append(((xv[0], xv[1]), (xv[2], xv[3])))
                            for nn in range(4):
                                d = mma(A, Bs[nn], lambda k: k)
                                for l in range(32):
                                    for e in range(4): acc[(wf, wm, l)][rt][nn][e] += d[l][e]
        for wf in range(4):
            for wm in range(2):
                for l in range(32):
                    t, c = l % 4, l // 4
                    for rt in range(2):
                        for nn in range(4):
                            for e in range(4):
                                f = 128*bx + 32*wf + 16*rt + c + 8*(e >> 1)
                                r = m0 + 32*wm + 8*nn + 2*t + (e & 1)
                                if f < N and r < M:
                                    assert y[r][f] is None
                                    y[r][f] = acc[(wf, wm, l)][rt][nn][e]
bad = sum(1 for m in range(M) for f in range(N) if y[m][f] is None or abs(y[m][f] - ref[m][f]) > 1e-9)
print("tc_qgemm mismatches:", bad, "of", M*N)
