package vkernels

import "fmt"

// checkMat panics unless a matrix of rows rows of cols elements with row
// stride ld fits in a slice of length l (and ld ≥ cols when rows > 1).
func checkMat(fn, name string, l, rows, cols, ld int) {
	if rows == 0 || cols == 0 {
		return
	}
	if rows > 1 && ld < cols {
		panic(fmt.Sprintf("vkernels.%s: row stride of %s %d < row length %d", fn, name, ld, cols))
	}
	if need := (rows-1)*ld + cols; l < need {
		panic(fmt.Sprintf("vkernels.%s: len(%s)=%d < %d (%d rows of %d, stride %d)", fn, name, l, need, rows, cols, ld))
	}
}

func checkSizes(fn string, g, n, dim int) {
	if g < 0 || n < 0 || dim < 0 {
		panic(fmt.Sprintf("vkernels.%s: negative size g=%d n=%d dim=%d", fn, g, n, dim))
	}
}

// BlockScores computes the attention scores of g query heads against the
// n keys of one block:
//
//	scores[h*lds+t] = Σ_{d<dim} q[h*dim+d] · keys[t*dim+d]     h < g, t < n
//
// q holds the g query rows, keys the block's key rows, both contiguous
// [rows][dim]. Only those g·n elements of scores are written. dim = 0
// gives zeros. Preconditions (panics otherwise): sizes ≥ 0, lds ≥ n when
// g > 1, and the slices long enough for the elements read or written.
//
// Every key row is read once for all g heads on the SIMD paths (register
// tiles of up to 4 heads × 4 keys, 2 × 8 or 1 × 16 on AVX-512; 4 × 2,
// 2 × 4 or 1 × 8 on AVX2), and the horizontal sums of a tile are done
// together with a transpose-and-add tree.
func BlockScores(scores []float32, lds int, q []float32, g int, keys []float32, n, dim int) {
	checkSizes("BlockScores", g, n, dim)
	if g == 0 || n == 0 {
		return
	}
	checkMat("BlockScores", "scores", len(scores), g, n, lds)
	if dim == 0 {
		for h := range g {
			clear(scores[h*lds : h*lds+n])
		}
		return
	}
	checkMat("BlockScores", "q", len(q), g, dim, dim)
	checkMat("BlockScores", "keys", len(keys), n, dim, dim)
	switch level {
	case levelAVX512:
		scoresZ(scores, lds, q, g, keys, n, dim)
	case levelAVX2:
		scoresY(scores, lds, q, g, keys, n, dim)
	default:
		scoresGo(scores, lds, q, g, keys, n, dim)
	}
}

// BlockScoresT is BlockScores for keys stored transposed, [dim][slot]
// with slot stride ldk ≥ n:
//
//	scores[h*lds+t] = Σ_{d<dim} q[h*dim+d] · keysT[d*ldk+t]     h < g, t < n
//
// It accumulates along rows of keysT with broadcast q elements (the same
// kernel as BlockValues), so it needs no horizontal sums, but each q
// element feeds only n/16 vector FMAs, so it beats BlockScores only for
// n ≥ 64 (see the package documentation). Preconditions as for BlockScores,
// with len(keysT) ≥ (dim−1)·ldk + n.
func BlockScoresT(scores []float32, lds int, q []float32, g int, keysT []float32, ldk, n, dim int) {
	checkSizes("BlockScoresT", g, n, dim)
	if g == 0 || n == 0 {
		return
	}
	checkMat("BlockScoresT", "scores", len(scores), g, n, lds)
	for h := range g {
		clear(scores[h*lds : h*lds+n])
	}
	if dim == 0 {
		return
	}
	checkMat("BlockScoresT", "q", len(q), g, dim, dim)
	checkMat("BlockScoresT", "keysT", len(keysT), dim, n, ldk)
	axpyRows(scores, lds, q, dim, g, keysT, ldk, dim, n)
}

// BlockValues adds the values of one block, weighted by the attention
// probabilities p, to the outputs of g query heads:
//
//	out[h*dim+d] += Σ_{t<n} p[h*ldp+t] · vals[t*ldv+d]     h < g, d < dim
//
// vals holds the block's value rows, [slot][ldv] with the first dim
// numbers of each row used (ldv = dim for a value cache, the key dim for
// MLA, whose values are the keys' leading numbers). out is [g][dim],
// contiguous. Every value row is read once for up to 4 heads, and each
// SIMD lane accumulates one output (no horizontal sums). Preconditions
// (panics otherwise): sizes ≥ 0, ldp ≥ n when g > 1, ldv ≥ dim when
// n > 1, slices long enough; out must not overlap p or vals.
func BlockValues(out []float32, p []float32, ldp, g int, vals []float32, ldv, n, dim int) {
	checkSizes("BlockValues", g, n, dim)
	if g == 0 || n == 0 || dim == 0 {
		return
	}
	checkMat("BlockValues", "out", len(out), g, dim, dim)
	checkMat("BlockValues", "p", len(p), g, n, ldp)
	checkMat("BlockValues", "vals", len(vals), n, dim, ldv)
	axpyRows(out, dim, p, ldp, g, vals, ldv, n, dim)
}

// axpyRows dispatches axpyRowsGo's computation.
func axpyRows(out []float32, ldo int, p []float32, ldp, rows int, v []float32, ldv, n, width int) {
	switch level {
	case levelAVX512:
		axpyRowsZ(out, ldo, p, ldp, rows, v, ldv, n, width)
	case levelAVX2:
		axpyRowsY(out, ldo, p, ldp, rows, v, ldv, n, width)
	default:
		axpyRowsGo(out, ldo, p, ldp, rows, v, ldv, n, width)
	}
}
