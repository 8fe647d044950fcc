package quant

import (
	"fmt"
	"math"
	"sort"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/internal/dense"
)

// EXL3Options tune QuantizeEXL3.
type EXL3Options struct {
	Bits     int      // K: bits per weight, 1 to 8
	Codebook Codebook // 3INST (the zero value), MCG or MUL1
	Seed     uint64   // seeds the random sign vectors
	// Sigma is the fraction of mean(diag H) added to H's diagonal (0:
	// 0.025, exllamav3's sigma_reg).
	Sigma float64
	// OutScales: 0 decides like exllamav3 (scale output channels by their
	// RMS unless the input is very irregular: the largest 2% of √diag H
	// hold ≥ 15% of the sum), 1 always, −1 never.
	OutScales int
	// NoScaleSearch skips the search for the global scale that minimizes
	// the trellis error on sample tiles (then 1: tiles of the codebook's
	// standard deviation).
	NoScaleSearch bool
	// NoRefit skips the final least-squares refit of the fp16 channel
	// scales suh and svh in the metric of H (the trellis is kept).
	NoRefit bool
	// Workers is the number of goroutines for the Viterbi search (0:
	// GOMAXPROCS).
	Workers int
	// GPU, when not nil, runs the Viterbi searches of large batches of
	// tiles (EncodeTiles).
	GPU TileEncoder
}

// EXL3Stats reports on one QuantizeEXL3 call.
type EXL3Stats struct {
	// ProxyError is tr(E·H·Eᵀ)/tr(W·H·Wᵀ), E = W − Q, with the H given
	// (undamped); with no H it is the relative squared error ‖E‖²/‖W‖².
	ProxyError float64
	// TileMSE is the mean squared error per weight of the trellis search
	// against its (error-compensated) targets, in units where the tiles
	// have the codebook's standard deviation.
	TileMSE   float64
	GScale    float64 // global scale found by the search
	OutScales bool    // whether output channels were scaled
	Damp      float64 // damping fraction used
	Padded    bool    // whether the stored shape is padded to 128
	Tiles     int     // trellis tiles encoded
}

// QuantizeEXL3 quantizes the row-major [out, in] matrix w (HF layout) to
// the EXL3 trellis format with K = opt.Bits bits per weight, given the
// Hessian h of its inputs (row-major [in, in], any positive multiple of
// XᵀX; nil quantizes without calibration, as if H = I). Following
// exllamav3:
//
//  1. both dimensions are padded with zeros to multiples of 128; W is
//     taken in the orientation [In, Out] (y = x·W);
//  2. H += Sigma·mean(diag H)·I;
//  3. random signs (seeded) on both sides; optional output channel scales
//     (column RMS) folded into svh; W ← (W / svh)·H128 (blockwise
//     orthonormal Hadamard along the outputs); input channel scales (row
//     RMS) and the codebook's spread folded into suh; W ← H128·(W / suh);
//     a global scale g searched on sample tiles multiplies W (suh /= g);
//  4. the rotated Hessian H' = H128·diag(suh)·H·diag(suh)·H128 gets a
//     block LDL decomposition H' = L·D·Lᵀ with 16×16 blocks (L unit
//     lower);
//  5. LDLQ: the 16-row blocks of W are encoded last to first; each block's
//     target is its rows plus Σ L[r, block]·(W_r − Q_r) over the rows r
//     already encoded, cut into 16×16 tiles, each permuted to
//     TensorCoreOrder and encoded by the tail-biting Viterbi search
//     (EncodeTiles, in parallel);
//  6. unless NoRefit, svh and then suh are refit by least squares in the
//     metric of H (closed form per output; a linear system for the inputs),
//     twice; suh and svh are rounded to fp16.
//
// The result is exactly reproducible for a given Seed. H may be singular
// (dead inputs): the damping makes it definite.
func QuantizeEXL3(w []float32, out, in int, h []float64, opt EXL3Options) (*Weight, *EXL3Stats, error) {
	K, cb := opt.Bits, opt.Codebook
	if out <= 0 || in <= 0 || len(w) != out*in {
		return nil, nil, fmt.Errorf("quant: QuantizeEXL3: %d values for shape [%d, %d]", len(w), out, in)
	}
	if K < 1 || K > MaxTrellisBits {
		return nil, nil, fmt.Errorf("quant: QuantizeEXL3: %d bits per weight, want 1 to %d", K, MaxTrellisBits)
	}
	if !cb.Stored() {
		return nil, nil, fmt.Errorf("quant: QuantizeEXL3: codebook %v cannot be stored (want 3inst, mcg or mul1)", cb)
	}
	if h != nil && len(h) != in*in {
		return nil, nil, fmt.Errorf("quant: QuantizeEXL3: Hessian of %d values for %d inputs (want %d)", len(h), in, in*in)
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, nil, fmt.Errorf("quant: QuantizeEXL3: weight [%d, %d] is %g", i/in, i%in, v)
		}
	}
	if h != nil {
		live := false
		for i, v := range h {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, nil, fmt.Errorf("quant: QuantizeEXL3: Hessian entry [%d, %d] is %g", i/in, i%in, v)
			}
			if i/in == i%in {
				if v < 0 {
					return nil, nil, fmt.Errorf("quant: QuantizeEXL3: Hessian diagonal entry %d is negative (%g)", i/in, v)
				}
				live = live || v > 0
			}
		}
		if !live {
			return nil, nil, fmt.Errorf("quant: QuantizeEXL3: the Hessian is zero (no calibration inputs reached the layer)")
		}
	}
	sigma := opt.Sigma
	if sigma <= 0 {
		sigma = 0.025
	}
	inP, outP := roundUp(in, EXL3Block), roundUp(out, EXL3Block)
	st := &EXL3Stats{Padded: inP != in || outP != out, Damp: sigma}

	// W [inP, outP] and the damped, padded H [inP, inP]
	W := make([]float64, inP*outP)
	for n := 0; n < out; n++ {
		for k := 0; k < in; k++ {
			W[k*outP+n] = float64(w[n*in+k])
		}
	}
	Wt := append([]float64(nil), W...) // the original, for the refit and the stats
	H := make([]float64, inP*inP)
	if h != nil {
		for i := 0; i < in; i++ {
			copy(H[i*inP:i*inP+in], h[i*in:(i+1)*in])
		}
	} else {
		for i := 0; i < in; i++ {
			H[i*inP+i] = 1
		}
	}
	var mean float64
	for i := 0; i < inP; i++ {
		mean += H[i*inP+i]
	}
	mean /= float64(inP)
	for i := 0; i < inP; i++ {
		H[i*inP+i] += sigma * mean
	}

	// output channel scales and signs
	suS := RandomSigns(inP, opt.Seed)
	svS := RandomSigns(outP, opt.Seed^0x5851f42d4c957f2d)
	applyOut := opt.OutScales > 0
	if opt.OutScales == 0 {
		applyOut = true
		if h != nil {
			d := make([]float64, inP)
			for i := range d {
				d[i] = math.Sqrt(H[i*inP+i])
			}
			sort.Sort(sort.Reverse(sort.Float64Slice(d)))
			var top, all float64
			for i, v := range d {
				if i < inP/50 {
					top += v
				}
				all += v
			}
			applyOut = top/all < 0.15
		}
	}
	st.OutScales = applyOut
	colRMS := make([]float64, outP)
	var meanCol float64
	for n := 0; n < outP; n++ {
		var s float64
		for k := 0; k < inP; k++ {
			s += W[k*outP+n] * W[k*outP+n]
		}
		colRMS[n] = math.Sqrt(s / float64(inP))
		meanCol += colRMS[n]
	}
	meanCol /= float64(outP)
	sv := make([]float64, outP)
	for n := range sv {
		sv[n] = svS[n]
		if applyOut && meanCol > 0 {
			c := colRMS[n] / meanCol
			if c == 0 {
				c = 0.1
			}
			sv[n] *= c
		}
		for k := 0; k < inP; k++ {
			W[k*outP+n] /= sv[n]
		}
	}
	hadamardColsBlocks(W, inP, outP, EXL3Block)
	// input channel scales, signs and the codebook's spread
	sd := cb.CodebookStd()
	su := make([]float64, inP)
	for k := range su {
		row := W[k*outP : (k+1)*outP]
		var s float64
		for _, v := range row {
			s += v * v
		}
		r := math.Sqrt(s / float64(outP))
		if r == 0 {
			r = 0.1
		}
		su[k] = suS[k] * r / sd
		for n := range row {
			row[n] /= su[k]
		}
	}
	hadamardRowsBlocks(W, inP, outP, EXL3Block)
	g := 1.0
	if !opt.NoScaleSearch {
		g = searchScale(W, inP, outP, K, cb, opt.Workers, opt.GPU)
	}
	st.GScale = g
	for i := range W {
		W[i] *= g
	}
	for k := range su {
		su[k] /= g
	}

	// rotated Hessian and its block LDL
	A := make([]float64, inP*inP)
	dense.Range(0, inP, 16, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			for j := 0; j < inP; j++ {
				A[i*inP+j] = su[i] * su[j] * H[i*inP+j]
			}
		}
	})
	hadamardRowsBlocks(A, inP, inP, EXL3Block)
	hadamardColsBlocks(A, inP, inP, EXL3Block)
	L, err := blockLDL(A, inP, sigma)
	if err != nil {
		return nil, nil, fmt.Errorf("quant: QuantizeEXL3: %w", err)
	}

	Q, packed, sqerr, err := ldlq(W, L, inP, outP, K, cb, opt.Workers, opt.GPU)
	if err != nil {
		return nil, nil, err
	}
	st.Tiles = inP * outP / TileLen
	st.TileMSE = sqerr / float64(inP*outP)

	// B = H128·Q·H128: the reconstruction is diag(su)·B·diag(sv)
	B := Q
	hadamardRowsBlocks(B, inP, outP, EXL3Block)
	hadamardColsBlocks(B, inP, outP, EXL3Block)
	for n := range sv {
		if colRMS[n] == 0 {
			sv[n] = 0 // an all-zero output stays zero
		}
	}
	if !opt.NoRefit {
		refitScales(Wt, B, H, su, sv, inP, outP)
	}
	q := &Weight{Format: EXL3, Out: out, In: in, Bits: K, Codebook: cb, Data: packed,
		Scales: make([]byte, 2*inP), Zeros: make([]byte, 2*outP)}
	for k, v := range su {
		putU16(q.Scales, k, f16Finite(v))
	}
	for n, v := range sv {
		putU16(q.Zeros, n, f16Finite(v))
	}
	if err := q.Validate(); err != nil {
		return nil, nil, err
	}
	// statistics with the stored (fp16) scales
	var num, den float64
	E := make([]float64, inP*outP)
	for k := 0; k < inP; k++ {
		sk := float64(dtype.F16ToF32(u16At(q.Scales, k)))
		for n := 0; n < outP; n++ {
			E[k*outP+n] = Wt[k*outP+n] - sk*B[k*outP+n]*float64(dtype.F16ToF32(u16At(q.Zeros, n)))
		}
	}
	if h == nil {
		for i := range E[:in*outP] {
			num += E[i] * E[i]
			den += Wt[i] * Wt[i]
		}
	} else {
		num, den = traceForm(E, h, in, outP), traceForm(Wt, h, in, outP)
	}
	if den > 0 {
		st.ProxyError = num / den
	}
	return q, st, nil
}

// traceForm returns tr(Aᵀ·h·A) for A [inP, cols] (row-major) restricted to
// its first in rows, h [in, in]: quadRows over A's columns, a block of
// them copied from A's rows.
func traceForm(a, h []float64, in, cols int) float64 {
	return quadRows(cols, in, h, func() func(int, int, []float64, int) {
		return func(n0, n1 int, et []float64, ld int) {
			for k := 0; k < in; k++ {
				copy(et[k*ld:k*ld+n1-n0], a[k*cols+n0:k*cols+n1])
			}
		}
	})
}

// f16Finite converts to fp16, saturating at ±65504.
func f16Finite(v float64) uint16 {
	v = math.Max(-65504, math.Min(65504, v))
	return dtype.F32ToF16(float32(v))
}

// searchScale returns the global scale g ∈ [0.7, 1.3] that minimizes the
// squared error of encoding g·tile (decoded and divided by g) over up to
// 24 sample tiles of W [inP, outP]: a wrapped diagonal of tiles (every
// tile row and column) plus the tiles of largest and smallest RMS.
func searchScale(W []float64, inP, outP, K int, cb Codebook, workers int, gpu TileEncoder) float64 {
	tk, tn := inP/16, outP/16
	type idx struct{ k, n int }
	var pick []idx
	seen := map[idx]bool{}
	add := func(i idx) {
		if !seen[i] {
			seen[i] = true
			pick = append(pick, i)
		}
	}
	for i := 0; i < max(tk, tn) && len(pick) < 16; i++ {
		add(idx{i % tk, (i * 7) % tn})
	}
	rms := make([]float64, tk*tn)
	order := make([]int, tk*tn)
	for t := range rms {
		order[t] = t
		kt, nt := t/tn, t%tn
		for r := 0; r < 16; r++ {
			for c := 0; c < 16; c++ {
				v := W[(kt*16+r)*outP+nt*16+c]
				rms[t] += v * v
			}
		}
	}
	sort.Slice(order, func(a, b int) bool { return rms[order[a]] > rms[order[b]] })
	for i := 0; i < 4 && i < len(order); i++ {
		add(idx{order[i] / tn, order[i] % tn})
		add(idx{order[len(order)-1-i] / tn, order[len(order)-1-i] % tn})
	}
	x := make([]float32, len(pick)*TileLen)
	for i, p := range pick {
		for e, q := range TensorCoreOrder {
			r, c := int(q)/16, int(q)%16
			x[i*TileLen+e] = float32(W[(p.k*16+r)*outP+p.n*16+c])
		}
	}
	xs := make([]float32, len(x))
	states := make([]uint16, len(x))
	dec := make([]float32, len(x))
	f := func(g float64) float64 {
		for i, v := range x {
			xs[i] = float32(float64(v) * g)
		}
		if _, err := EncodeTiles(states, dec, xs, K, cb, workers, gpu); err != nil {
			return math.Inf(1)
		}
		var s float64
		for i, v := range x {
			d := float64(dec[i])/g - float64(v)
			s += d * d
		}
		return s
	}
	g, _ := goldenMin(f, 0.7, 1.3, 8)
	return g
}

// blockLDL returns the unit lower block-triangular L of a = L·D·Lᵀ (D block
// diagonal with 16×16 blocks) with its diagonal blocks zeroed — the
// feedback matrix of LDLQ. a (n×n, n a multiple of 16, symmetric positive
// definite) is not modified; if its Cholesky factorization fails, 2·sigma
// of mean(diag a) is added to the diagonal, up to 10 times.
func blockLDL(a []float64, n int, sigma float64) ([]float64, error) {
	var mean float64
	for i := 0; i < n; i++ {
		mean += a[i*n+i]
	}
	mean /= float64(n)
	L := make([]float64, n*n)
	extra := 0.0
	for try := 0; ; try++ {
		copy(L, a)
		for i := 0; i < n; i++ {
			L[i*n+i] += extra
		}
		if cholesky(L, n) == nil {
			break
		}
		if try == 10 {
			return nil, fmt.Errorf("block LDL: the Hessian is not positive definite even with damping")
		}
		extra += 2 * sigma * mean
	}
	// L·blockdiag(D_b)⁻¹ where D_b is L's diagonal block b
	// (each diagonal block's inverse first, then the rows below it on
	// every core)
	dinv := make([]float64, n*16)
	for b := 0; b < n/16; b++ {
		d := dinv[b*256 : (b+1)*256]
		for r := 0; r < 16; r++ {
			copy(d[r*16:r*16+16], L[(b*16+r)*n+b*16:(b*16+r)*n+b*16+16])
		}
		invLowerPlain(d, 16)
	}
	dense.Range(0, n, 16, func(r0, r1 int) {
		var row [16]float64
		for r := r0; r < r1; r++ {
			for b := 0; b < r/16; b++ {
				d := dinv[b*256 : (b+1)*256]
				src := L[r*n+b*16 : r*n+b*16+16]
				for c := 0; c < 16; c++ {
					var s float64
					for j := c; j < 16; j++ {
						s += src[j] * d[j*16+c]
					}
					row[c] = s
				}
				copy(src, row[:])
			}
			clear(L[r*n+r/16*16 : r*n+r/16*16+16])
		}
	})
	return L, nil
}

// ldlq encodes W [inP, outP] (rotated, scaled) block row by block row,
// last to first, with the error feedback of L (blockLDL's). It returns the
// decoded values, the packed trellis ([inP/16, outP/16] tiles of 32·K
// bytes) and the total squared error against the targets.
func ldlq(W, L []float64, inP, outP, K int, cb Codebook, workers int, gpu TileEncoder) ([]float64, []byte, float64, error) {
	tn := outP / 16
	nb := inP / 16
	tileBytes := 32 * K
	acc := make([]float64, inP*outP)
	Q := make([]float64, inP*outP)
	packed := make([]byte, nb*tn*tileBytes)
	x := make([]float32, tn*TileLen)
	states := make([]uint16, tn*TileLen)
	dec := make([]float32, tn*TileLen)
	e := make([]float64, 16*outP)
	var total float64
	for kb := nb - 1; kb >= 0; kb-- {
		for nt := 0; nt < tn; nt++ {
			for i, p := range TensorCoreOrder {
				k, n := kb*16+int(p)/16, nt*16+int(p)%16
				x[nt*TileLen+i] = float32(W[k*outP+n] + acc[k*outP+n])
			}
		}
		sq, err := EncodeTiles(states, dec, x, K, cb, workers, gpu)
		if err != nil {
			return nil, nil, 0, err
		}
		total += sq
		for nt := 0; nt < tn; nt++ {
			PackTile(packed[(kb*tn+nt)*tileBytes:], (*[TileLen]uint16)(states[nt*TileLen:]), K)
			for i, p := range TensorCoreOrder {
				k, n := kb*16+int(p)/16, nt*16+int(p)%16
				Q[k*outP+n] = float64(dec[nt*TileLen+i])
			}
		}
		// feed this block's error back into the earlier rows:
		// acc[i][n] += Σ_r L[r][i]·e_r[n] (i < 16kb, r in the block)
		if kb > 0 {
			for r := 0; r < 16; r++ {
				for n := range outP {
					e[r*outP+n] = W[(kb*16+r)*outP+n] - Q[(kb*16+r)*outP+n]
				}
			}
			dgemm(kb*16, outP, 16, 1, L[kb*16*inP:], inP, e, outP, acc, outP, false, false, false)
		}
	}
	return Q, packed, total, nil
}

// refitScales refits sv (per output) and then su (per input) by least
// squares in the metric of H, twice, for the reconstruction
// diag(su)·B·diag(sv) of W (all [inP, outP] except H [inP, inP]):
// sv_n ← sv_n·(r_nᵀHw_n)/(r_nᵀHr_n) for each column r_n of the
// reconstruction, then su ← su·x with ((R·Rᵀ)∘H)·x = rowsum(R∘(H·W)).
// Non-positive or non-finite factors are left at 1.
func refitScales(W, B, H, su, sv []float64, inP, outP int) {
	HW := make([]float64, inP*outP)
	symMulInto(HW, H, W, inP, outP)
	R := make([]float64, inP*outP)
	HR := make([]float64, inP*outP)
	build := func() {
		for k := 0; k < inP; k++ {
			for n := 0; n < outP; n++ {
				R[k*outP+n] = su[k] * B[k*outP+n] * sv[n]
			}
		}
	}
	for round := 0; round < 2; round++ {
		build()
		symMulInto(HR, H, R, inP, outP)
		num := make([]float64, outP)
		den := make([]float64, outP)
		for k := 0; k < inP; k++ {
			for n := 0; n < outP; n++ {
				r := R[k*outP+n]
				num[n] += r * HW[k*outP+n]
				den[n] += r * HR[k*outP+n]
			}
		}
		for n := range sv {
			if c := num[n] / den[n]; den[n] > 0 && c > 0 && !math.IsInf(c, 0) {
				sv[n] *= c
			}
		}
		build()
		// M = (R·Rᵀ)∘H, b = rowsum(R∘HW)
		M := make([]float64, inP*inP)
		b := make([]float64, inP)
		rt := make([]float64, inP*outP) // Rᵀ, for R·Rᵀ: the Gram matrix of R's rows
		dense.Transpose(rt, R, inP, outP, outP)
		dgemm(inP, inP, outP, 1, rt, inP, rt, inP, M, inP, true, false, false)
		for i := 0; i < inP; i++ {
			ri := R[i*outP : (i+1)*outP]
			for j := 0; j <= i; j++ {
				M[i*inP+j] *= H[i*inP+j]
				M[j*inP+i] = M[i*inP+j]
			}
			hw := HW[i*outP : (i+1)*outP]
			for n, v := range ri {
				b[i] += v * hw[n]
			}
		}
		var md float64
		for i := 0; i < inP; i++ {
			md += M[i*inP+i]
		}
		md /= float64(inP)
		for i := 0; i < inP; i++ {
			M[i*inP+i] += 1e-6*md + 1e-300
		}
		if cholesky(M, inP) != nil {
			return
		}
		x := choleskySolve(M, b, inP)
		for i, v := range x {
			if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
				su[i] *= v
			}
		}
	}
}

// matMulInto sets dst [m, p] = a [m, k] · b [k, p] (all row-major): dgemm
// of a transposed and b.
func matMulInto(dst, a, b []float64, m, k, p int) {
	clear(dst[:m*p])
	at := make([]float64, m*k)
	dense.Transpose(at, a, m, k, k)
	dgemm(m, p, k, 1, at, m, b, p, dst, p, false, false, false)
}

// symMulInto sets dst [n, p] = h [n, n] · b [n, p] for a symmetric h
// (read k-major as it is: hᵀ = h).
func symMulInto(dst, h, b []float64, n, p int) {
	clear(dst[:n*p])
	dgemm(n, p, n, 1, h, n, b, p, dst, p, false, false, false)
}

// choleskySolve solves L·Lᵀ·x = b for the factor L (lower, n×n).
func choleskySolve(L, b []float64, n int) []float64 {
	y := make([]float64, n)
	for i := 0; i < n; i++ {
		s := b[i]
		for k := 0; k < i; k++ {
			s -= L[i*n+k] * y[k]
		}
		y[i] = s / L[i*n+i]
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := y[i]
		for k := i + 1; k < n; k++ {
			s -= L[k*n+i] * x[k]
		}
		x[i] = s / L[i*n+i]
	}
	return x
}
