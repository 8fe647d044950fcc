package quant

import (
	"fmt"
	"math"
	"sort"

	"github.com/marlin-llm/marlin/internal/dense"
)

// GPTQOptions tune QuantizeGPTQ.
type GPTQOptions struct {
	// Damp is the fraction of mean(diag H) added to H's diagonal (0: 0.01).
	// When H + damping is not positive definite it is multiplied by 10, up
	// to four times.
	Damp float64
	// ActOrder quantizes the input columns by decreasing diag H (act-order,
	// desc_act); groups are then consecutive in that order and the weight
	// gets a g_idx.
	ActOrder bool
	// BlockSize is the lazy-batch width (0: 128). It changes the order of
	// floating-point operations, not the algorithm.
	BlockSize int
}

// GPTQStats reports on one QuantizeGPTQ call.
type GPTQStats struct {
	Damp float64 // damping fraction finally used
	// Error is tr((W−Q)·H·(W−Q)ᵀ) with the H given (undamped), and
	// RTNError the same for QuantizeRTN's result with the same spec.
	Error, RTNError float64
}

// QuantizeGPTQ quantizes the row-major [out, in] matrix w to the GPTQ
// integer format of spec with the GPTQ algorithm (Frantar et al. 2022)
// given the Hessian h of the layer's inputs (row-major [in, in]; any
// positive multiple of XᵀX, X the calibration inputs as rows):
//
//   - input columns whose diag h is 0 are zeroed (their inputs never
//     occur) and get h = 1 on the diagonal;
//   - with ActOrder, columns are processed by decreasing diag h;
//   - H += Damp·mean(diag H)·I; U = the upper Cholesky factor of H⁻¹
//     (H⁻¹ = UᵀU);
//   - columns j = 0, 1, … (in processing order) are rounded to nearest
//     with the group's scale and zero point (QuantizeRTN's rule, with its
//     scale search unless spec.MaxScale, computed from the group's
//     current, error-updated values when its first column is reached),
//     and the error (w_j − q_j)/U_jj is propagated to the
//     later columns through row j of U; columns are processed in lazy
//     batches of BlockSize, which gives the same result as one at a time.
//
// The result is in the GPTQ checkpoint layout (Format GPTQ). Stats report
// the proxy error tr((W−Q)H(W−Q)ᵀ) of GPTQ and of round-to-nearest.
func QuantizeGPTQ(w []float32, out, in int, h []float64, spec Spec, opt GPTQOptions) (*Weight, *GPTQStats, error) {
	if out <= 0 || in <= 0 || len(w) != out*in {
		return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: %d values for shape [%d, %d]", len(w), out, in)
	}
	if len(h) != in*in {
		return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: Hessian of %d values for %d inputs (want %d)", len(h), in, in*in)
	}
	if spec.Format != GPTQ {
		return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: format %v (want the GPTQ integers)", spec.Format)
	}
	if err := spec.Fits(in); err != nil {
		return nil, nil, err
	}
	group := spec.Group
	if group <= 0 {
		group = in
	}
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: weight [%d, %d] is %g", i/in, i%in, v)
		}
	}
	for i, v := range h {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: Hessian entry [%d, %d] is %g", i/in, i%in, v)
		}
	}
	live := false
	for i := 0; i < in; i++ {
		if d := h[i*in+i]; d < 0 {
			return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: Hessian diagonal entry %d is negative (%g)", i, d)
		} else if d > 0 {
			live = true
		}
	}
	if !live {
		return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: the Hessian is zero (no calibration inputs reached the layer)")
	}
	damp := opt.Damp
	if damp <= 0 {
		damp = 0.01
	}
	bs := opt.BlockSize
	if bs <= 0 {
		bs = 128
	}
	zeroOffset := 1
	if spec.V2 {
		zeroOffset = 0
	}

	// processing order
	perm := make([]int, in)
	for i := range perm {
		perm[i] = i
	}
	if opt.ActOrder {
		sort.SliceStable(perm, func(a, b int) bool { return h[perm[a]*in+perm[a]] > h[perm[b]*in+perm[b]] })
	}
	// W (permuted columns), dead columns handled
	W := make([]float64, out*in)
	dead := make([]bool, in)
	for j, pj := range perm {
		dead[j] = h[pj*in+pj] == 0
	}
	for n := 0; n < out; n++ {
		wr, src := W[n*in:(n+1)*in], w[n*in:(n+1)*in]
		for j, pj := range perm {
			if !dead[j] {
				wr[j] = float64(src[pj])
			}
		}
	}
	// U, the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), H the permuted
	// Hessian (dead columns: a 1 on the diagonal, 0 elsewhere): with J
	// the reversal, JHJ = MMᵀ (M lower) gives H = NNᵀ with N = JMJ upper,
	// so H⁻¹ = N⁻ᵀN⁻¹ and U = N⁻¹ = J·M⁻¹·J. JHJ is made straight from h,
	// row by row, and U is M⁻¹ turned half a turn in place: at In = 14336
	// each of these matrices is 1.6 GB.
	rev := make([]float64, in*in)
	for i := 0; i < in; i++ {
		r := in - 1 - i // row i of JHJ is row in−1−i of H, reversed
		hr, src := rev[i*in:(i+1)*in], h[perm[r]*in:(perm[r]+1)*in]
		for j := range hr {
			if c := in - 1 - j; !dead[r] && !dead[c] {
				hr[j] = src[perm[c]]
			}
		}
		if dead[r] {
			hr[i] = 1
		}
	}
	M, used, err := dampedCholesky(rev, in, damp)
	if err != nil {
		return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: damped Hessian: %w", err)
	}
	U := invLowerBlocked(M, in) // M⁻¹, then turned: U[i][j] = M⁻¹[in−1−i][in−1−j]
	for a, b := 0, in*in-1; a < b; a, b = a+1, b-1 {
		U[a], U[b] = U[b], U[a]
	}
	u := func(i, j int) float64 { return U[i*in+j] }

	maxq := float64(int(1)<<uint(spec.Bits) - 1)
	groups := in / group
	scales := make([]float32, groups*out)
	zeros := make([]float64, groups*out)
	codes := make([]uint8, out*in) // permuted column order
	// Every output row is quantized independently of the others (U is
	// shared): rows are split over the cores.
	rowsPart := func(n0, n1 int) {
		errs := make([]float64, (n1-n0)*bs)
		et := make([]float64, (n1-n0)*bs) // errs transposed
		vals := make([]float64, group)
		for i1 := 0; i1 < in; i1 += bs {
			i2 := min(i1+bs, in)
			cnt := i2 - i1
			clear(errs)
			for i := 0; i < cnt; i++ {
				j := i1 + i
				g := j / group
				if j%group == 0 {
					for n := n0; n < n1; n++ {
						en := errs[(n-n0)*bs:]
						for c := j; c < j+group; c++ {
							v := W[n*in+c]
							if c >= i2 { // not yet updated for this batch's columns
								for t := 0; t < i; t++ {
									v -= en[t] * u(i1+t, c)
								}
							}
							vals[c-j] = v
						}
						scales[g*out+n], zeros[g*out+n] = groupParams(vals, spec.Bits, spec.Sym, zeroOffset, !spec.MaxScale)
					}
				}
				d := u(j, j)
				ur := U[j*in+j+1 : j*in+i2]
				for n := n0; n < n1; n++ {
					s, z := float64(scales[g*out+n]), zeros[g*out+n]
					v := W[n*in+j]
					q := math.Max(0, math.Min(maxq, math.RoundToEven(v/s)+z))
					codes[n*in+j] = uint8(q)
					e := (v - (q-z)*s) / d
					errs[(n-n0)*bs+i] = e
					row := W[n*in+j+1 : n*in+i2]
					for c, uv := range ur {
						row[c] -= e * uv
					}
				}
			}
			// propagate the batch's errors to the later columns:
			// W[n, i2:] −= Σ_i e[n, i]·U[i1+i, i2:], a product of the
			// batch's errors (transposed: k-major) with U's rows
			if rest := in - i2; rest > 0 {
				dense.Transpose(et, errs, n1-n0, cnt, bs)
				dgemmSerial(n1-n0, rest, cnt, -1, et, n1-n0, U[i1*in+i2:], in, W[n0*in+i2:], in)
			}
		}
	}
	parallelRows(out, in, rowsPart)
	// back to the original column order
	c := &Codes{Format: GPTQ, Out: out, In: in, Bits: spec.Bits, Group: group, Sym: spec.Sym,
		ZeroOffset: zeroOffset, Q: make([]uint8, out*in), Scales: scales, Zeros: make([]int32, groups*out)}
	for i, z := range zeros {
		c.Zeros[i] = int32(z)
	}
	for n := 0; n < out; n++ {
		qr, src := c.Q[n*in:(n+1)*in], codes[n*in:(n+1)*in]
		for j, pj := range perm {
			qr[pj] = src[j]
		}
	}
	if opt.ActOrder {
		c.GIdx = make([]int32, in)
		trivial := true
		for j, pj := range perm {
			c.GIdx[pj] = int32(j / group)
			if pj/group != j/group {
				trivial = false
			}
		}
		if trivial {
			c.GIdx = nil
		}
	}
	q, err := Pack("", c)
	if err != nil {
		return nil, nil, err
	}
	st := &GPTQStats{Damp: used, Error: ProxyError(w, q, h)}
	if r, err := QuantizeRTN(w, out, in, spec); err == nil {
		st.RTNError = ProxyError(w, r, h)
	}
	return q, st, nil
}

// ProxyError returns tr((W−Q)·H·(W−Q)ᵀ) = Σ_rows eᵀ·H·e for the row-major
// [Out, In] matrix w, its quantized form q (decoded with DequantizeRow) and
// the symmetric [In, In] matrix h: the output error energy on the inputs
// whose second moment h is.
func ProxyError(w []float32, q *Weight, h []float64) float64 {
	in := q.In
	return quadRows(q.Out, in, h, func() func(int, int, []float64, int) {
		row := make([]float32, in)
		return func(n0, n1 int, et []float64, ld int) {
			for n := n0; n < n1; n++ {
				q.DequantizeRow(row, n)
				for k, v := range row {
					et[k*ld+n-n0] = float64(w[n*in+k]) - float64(v)
				}
			}
		}
	})
}

// OutputEnergy returns tr(W·H·Wᵀ) = Σ_rows wᵀ·H·w for the row-major [out,
// in] matrix w and the symmetric [in, in] matrix h: the output energy of
// w on the inputs whose second moment h is (ProxyError's scale).
func OutputEnergy(w []float32, out, in int, h []float64) float64 {
	return quadRows(out, in, h, func() func(int, int, []float64, int) {
		return func(n0, n1 int, et []float64, ld int) {
			for n := n0; n < n1; n++ {
				for k, v := range w[n*in : (n+1)*in] {
					et[k*ld+n-n0] = float64(v)
				}
			}
		}
	})
}

// quadRows returns Σ_n e_nᵀ·H·e_n over out vectors e_n of length in, in
// chunks of up to chunkRows vectors: a filler (newFill makes one a core,
// each given a part of the chunk) writes vectors n0 … n1−1 transposed
// (k-major) at et, e_n[k] at et[k·ld + n − n0], then F = E·H by dgemm on
// every core, and Σ E∘F row by row.
func quadRows(out, in int, h []float64, newFill func() func(n0, n1 int, et []float64, ld int)) float64 {
	rows := min(out, chunkRows)
	et := make([]float64, in*rows)
	f := make([]float64, rows*in)
	var total float64
	for c0 := 0; c0 < out; c0 += rows {
		r := min(rows, out-c0)
		// each part writes its vectors' columns of et, [a, b) of each row
		dense.Range(0, r, 8, func(a, b int) {
			newFill()(c0+a, c0+b, et[a:], r)
		})
		clear(f[:r*in])
		dgemm(r, in, in, 1, et, r, h, in, f, in, false, false, false)
		sums := make([]float64, r)
		dense.Range(0, r, 8, func(a, b int) {
			for rr := a; rr < b; rr++ {
				var s float64
				for k, v := range f[rr*in : (rr+1)*in] {
					s += et[k*r+rr] * v
				}
				sums[rr] = s
			}
		})
		for _, s := range sums {
			total += s
		}
	}
	return total
}

// chunkRows is the rows of a chunk of quadRows and Compensation.Target:
// their float64 copies (two a chunk, at In = 14336 117 MB each) bound the
// memory, their dgemm takes every core.
const chunkRows = 1024

// dot64 returns Σ a[i]·b[i] (len(b) ≥ len(a)), four partial sums.
func dot64(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
