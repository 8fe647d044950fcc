# mma_m16n8k16.py — the PTX fragment layout of mma.m16n8k16 (f16 inputs,
# f32 accumulators) for the emulators in this folder: lane l = 4g + t holds
# A pairs a0 (row g, k 2t, 2t+1), a1 (row g+8), a2 (row g, k 2t+8, 2t+9),
# a3 (row g+8, k 2t+8…), B pairs b0 (k 2t, 2t+1; column g), b1 (k 2t+8…),
# and D d0, d1 (row g, columns 2t, 2t+1), d2, d3 (row g+8).
def mma(afr, bfr, key):
    """afr[l] = (a0, a1, a2, a3), bfr[l] = (b0, b1): pairs of (value,
    label). Asserts that every product pairs A and B slots whose key(label)
    (the input index) agree, and returns d[l] = [d0, d1, d2, d3]."""
    A = [[None]*16 for _ in range(16)]; B = [[None]*8 for _ in range(16)]
    for l in range(32):
        g, t = l // 4, l % 4
        a0, a1, a2, a3 = afr[l]; b0, b1 = bfr[l]
        A[g][2*t], A[g][2*t+1] = a0; A[g+8][2*t], A[g+8][2*t+1] = a1
        A[g][2*t+8], A[g][2*t+9] = a2; A[g+8][2*t+8], A[g+8][2*t+9] = a3
        B[2*t][g], B[2*t+1][g] = b0; B[2*t+8][g], B[2*t+9][g] = b1
    D = [[0.0]*8 for _ in range(16)]
    for r in range(16):
        for n in range(8):
            for k in range(16):
                (av, la), (bv, lb) = A[r][k], B[k][n]
                assert key(la) == key(lb), (la, lb)
                D[r][n] += av * bv
    return [[D[l//4][2*(l%4)], D[l//4][2*(l%4)+1], D[l//4+8][2*(l%4)], D[l//4+8][2*(l%4)+1]] for l in range(32)]
