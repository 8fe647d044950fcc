package quant

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/marlin-llm/marlin/internal/dense"
)

// dgemm computes C[i][j] += alpha·Σ_p A[p][i]·B[p][j] for i < m, j < n,
// p < k in float64: A and B are given k-major (A[p·lda + i], B[p·ldb +
// j]) and C row-major (C[i·ldc + j]). A row-major X·Y is dgemm of Xᵀ (made
// by dense.Transpose) and Y; a Gram matrix XᵀX of a row-major X is dgemm of X
// with itself.
//
// lower computes only the tiles of C that reach its lower triangle (j ≤
// i): the tiles that cross the diagonal are computed whole, so entries
// above it may change too (the callers hold scratch there). triA and triB
// say that A[p][i] = 0 for p < i and B[p][j] = 0 for p < j (upper
// triangular operands, as a lower triangular matrix is when read
// k-major): a tile's sum then starts at p = max(i₀, j₀) of its first row
// and column.
//
// The work is cut into blocks of dgemmMC rows of C, shared by the cores.
// B is first copied, on every core, into column panels of the tile's
// width (panel t holds B[p][t·tc … t·tc+tc−1] for every p, contiguous), so
// that every block reads B from a few pages whatever ldb is, and B is
// copied once rather than once a block; within a block, steps of dgemmKC
// terms of the sum copy A's rows the same way and keep both panels in
// cache for the register tile (dgemmTile: 8 × 16 in AVX-512 or 4 × 8 in
// AVX2 + FMA where the CPU has them, else 4 × 8 in plain Go). The sums
// are therefore formed in a different order from a plain loop's: they
// agree with it to a few float64 ulps of Σ|A·B| (the tests' tolerance).
func dgemm(m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, lower, triA, triB bool) {
	if m <= 0 || n <= 0 || k <= 0 {
		return
	}
	_, tc := dgemmTileDims()
	bp := make([]float64, n/tc*tc*k)
	dense.Range(0, n/tc, 4, func(t0, t1 int) { packPanels(bp, b, ldb, k, tc, t0, t1) })
	blocks := (m + dgemmMC - 1) / dgemmMC
	work := func(blk int) {
		i0, i1 := blk*dgemmMC, min(m, (blk+1)*dgemmMC)
		dgemmBlock(i0, i1, n, k, alpha, a, lda, b, ldb, bp, c, ldc, lower, triA, triB)
	}
	workers := min(runtime.GOMAXPROCS(0), blocks)
	if workers <= 1 || int64(m)*int64(n)*int64(k) < 1<<18 {
		for blk := range blocks {
			work(blk)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				blk := int(next.Add(1)) - 1
				if blk >= blocks {
					return
				}
				work(blk)
			}
		}()
	}
	wg.Wait()
}

// packPanels copies the column panels t0 … t1−1 of B (tc columns each) into
// bp: panel t at bp[t·k·tc:], B[p][t·tc + jj] at p·tc + jj.
func packPanels(bp, b []float64, ldb, k, tc, t0, t1 int) {
	for t := t0; t < t1; t++ {
		dst := bp[t*k*tc : (t+1)*k*tc]
		for p := 0; p < k; p++ {
			copy(dst[p*tc:(p+1)*tc], b[p*ldb+t*tc:p*ldb+t*tc+tc])
		}
	}
}

// dgemmSerial is dgemm (neither lower nor triangular) on the calling
// goroutine alone, for callers that already share their work among the
// cores; it packs B's panels a step at a time (its callers' products are
// a few hundred rows).
func dgemmSerial(m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	for i0 := 0; i0 < m; i0 += 4 * dgemmMC {
		dgemmBlock(i0, min(m, i0+4*dgemmMC), n, k, alpha, a, lda, b, ldb, nil, c, ldc, false, false, false)
	}
}

// dgemmScratch holds dgemmBlock's packed panels between calls.
var dgemmScratch = sync.Pool{New: func() any { return new([]float64) }}

const (
	dgemmMC = 64  // rows of C a work block
	dgemmKC = 256 // terms of the sum a step
)

// dgemmBlock is dgemm on rows [i0, i1) of C, with B's panels packed in bp
// (packPanels) or, when bp is nil, packed here a step at a time. Each step
// of the sum copies its part of A's rows (dgemmKC × the block's rows)
// into a contiguous buffer.
func dgemmBlock(i0, i1, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, bp []float64, c []float64, ldc int, lower, triA, triB bool) {
	tr, tc := dgemmTileDims()
	mr := i1 - i0
	sc := dgemmScratch.Get().(*[]float64)
	defer dgemmScratch.Put(sc)
	if cap(*sc) < dgemmKC*(mr+tc) {
		*sc = make([]float64, dgemmKC*(mr+tc))
	}
	ap, bs := (*sc)[:dgemmKC*mr], (*sc)[dgemmKC*mr:dgemmKC*(mr+tc)]
	for p0 := 0; p0 < k; p0 += dgemmKC {
		p1 := min(k, p0+dgemmKC)
		if triA && p1 <= i0 {
			continue // A[p][i] = 0 for every row of the block
		}
		for p := p0; p < p1; p++ {
			copy(ap[(p-p0)*mr:(p-p0+1)*mr], a[p*lda+i0:p*lda+i1])
		}
		for j0 := 0; j0 < n; j0 += tc {
			if lower && j0 > i1-1 {
				break
			}
			if triB && p1 <= j0 {
				break // and for every later column tile too
			}
			jw := min(tc, n-j0)
			var panel []float64 // B[p0 …][j0 … j0+tc−1], tc a row
			if jw == tc {
				if bp != nil {
					panel = bp[(j0/tc)*k*tc+p0*tc:]
				} else {
					for p := p0; p < p1; p++ {
						copy(bs[(p-p0)*tc:(p-p0+1)*tc], b[p*ldb+j0:p*ldb+j0+tc])
					}
					panel = bs
				}
			}
			for i := i0; i < i1; i += tr {
				if lower && j0 > i+tr-1 {
					continue
				}
				// the terms this tile needs: p ≥ i (triA), p ≥ j0 (triB)
				ps := p0
				if triA {
					ps = max(ps, i)
				}
				if triB {
					ps = max(ps, j0)
				}
				if ps >= p1 {
					continue
				}
				if i+tr <= i1 && jw == tc {
					dgemmTile(c[i*ldc+j0:], ldc, ap[(ps-p0)*mr+i-i0:], mr, panel[(ps-p0)*tc:], tc, p1-ps, alpha)
					continue
				}
				// an edge tile: plain loops
				for ii := i; ii < min(i+tr, i1); ii++ {
					for jj := j0; jj < j0+jw; jj++ {
						var s float64
						for p := ps; p < p1; p++ {
							s += a[p*lda+ii] * b[p*ldb+jj]
						}
						c[ii*ldc+jj] += alpha * s
					}
				}
			}
		}
	}
}

// dgemmTileGo is dgemmTile in plain Go, on a tr × tc tile (at most 8 ×
// 16): C[ii][jj] += alpha·Σ_{p<k} a[p·lda + ii]·b[p·ldb + jj].
func dgemmTileGo(c []float64, ldc int, a []float64, lda int, b []float64, ldb int, k int, alpha float64, tr, tc int) {
	var acc [8][16]float64
	for p := 0; p < k; p++ {
		ap := a[p*lda : p*lda+tr]
		bp := b[p*ldb : p*ldb+tc]
		for ii, av := range ap {
			r := acc[ii][:tc]
			for jj, bv := range bp {
				r[jj] += av * bv
			}
		}
	}
	for ii := 0; ii < tr; ii++ {
		cr := c[ii*ldc : ii*ldc+tc]
		for jj, v := range acc[ii][:tc] {
			cr[jj] += alpha * v
		}
	}
}
