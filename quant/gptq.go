package quant

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
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
	// W (permuted columns) and H (permuted), dead columns handled
	W := make([]float64, out*in)
	H := make([]float64, in*in)
	for j, pj := range perm {
		dead := h[pj*in+pj] == 0
		for i, pi := range perm {
			H[i*in+j] = h[pi*in+pj]
		}
		if dead {
			for i := range perm {
				H[i*in+j], H[j*in+i] = 0, 0
			}
			H[j*in+j] = 1
		}
		for n := 0; n < out; n++ {
			if !dead {
				W[n*in+j] = float64(w[n*in+pj])
			}
		}
	}
	// U, the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU): with J the
	// reversal, JHJ = MMᵀ (M lower) gives H = NNᵀ with N = JMJ upper, so
	// H⁻¹ = N⁻ᵀN⁻¹ and U = N⁻¹ = J·M⁻¹·J.
	rev := make([]float64, in*in)
	for i := 0; i < in; i++ {
		for j := 0; j < in; j++ {
			rev[i*in+j] = H[(in-1-i)*in+(in-1-j)]
		}
	}
	M, used, err := dampedCholesky(rev, in, damp)
	if err != nil {
		return nil, nil, fmt.Errorf("quant: QuantizeGPTQ: damped Hessian: %w", err)
	}
	mt := invLowerT(M, in) // mt[j*in+i] = (M⁻¹)[i][j]
	U := make([]float64, in*in)
	for i := 0; i < in; i++ {
		for j := i; j < in; j++ {
			U[i*in+j] = mt[(in-1-j)*in+(in-1-i)]
		}
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
		vals := make([]float64, group)
		ut := make([]float64, in*bs)
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
			// W[n, i2:] −= Σ_i e[n, i]·U[i1+i, i2:], as dot products over the
			// batch against U's block transposed once (ut: [in−i2, cnt]),
			// four rows of W at a time
			rest := in - i2
			ut = ut[:rest*cnt]
			for i := 0; i < cnt; i++ {
				for k, uv := range U[(i1+i)*in+i2 : (i1+i+1)*in] {
					ut[k*cnt+i] = uv
				}
			}
			n := n0
			for ; n+4 <= n1; n += 4 {
				e := (n - n0) * bs
				e0, e1, e2, e3 := errs[e:e+cnt], errs[e+bs:e+bs+cnt], errs[e+2*bs:e+2*bs+cnt], errs[e+3*bs:e+3*bs+cnt]
				r0 := W[n*in+i2 : (n+1)*in]
				r1 := W[(n+1)*in+i2 : (n+2)*in]
				r2 := W[(n+2)*in+i2 : (n+3)*in]
				r3 := W[(n+3)*in+i2 : (n+4)*in]
				r1, r2, r3 = r1[:rest], r2[:rest], r3[:rest]
				for k := range r0 {
					u := ut[k*cnt : (k+1)*cnt]
					u = u[:len(e0)]
					var s0, s1, s2, s3 float64
					for i, uv := range u {
						s0 += e0[i] * uv
						s1 += e1[i] * uv
						s2 += e2[i] * uv
						s3 += e3[i] * uv
					}
					r0[k] -= s0
					r1[k] -= s1
					r2[k] -= s2
					r3[k] -= s3
				}
			}
			for ; n < n1; n++ {
				e := errs[(n-n0)*bs : (n-n0)*bs+cnt]
				rr := W[n*in+i2 : (n+1)*in]
				for k := range rr {
					rr[k] -= dot64(e, ut[k*cnt:(k+1)*cnt])
				}
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
	for j, pj := range perm {
		for n := 0; n < out; n++ {
			c.Q[n*in+pj] = codes[n*in+j]
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
// the symmetric [In, In] matrix h (only its upper triangle is read): the
// output error energy on the inputs whose second moment h is. Rows are
// split over the cores, and each core takes four rows at a time through
// one pass over h (at In = 1024, h is 8 MB: more than a core's cache).
func ProxyError(w []float32, q *Weight, h []float64) float64 {
	in := q.In
	workers := min(runtime.GOMAXPROCS(0), q.Out)
	sums := make([]float64, workers)
	var wg sync.WaitGroup
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			row := make([]float32, in)
			var e [4][]float64
			for r := range e {
				e[r] = make([]float64, in)
			}
			var total float64
			for n0, n1 := q.Out*wk/workers, q.Out*(wk+1)/workers; n0 < n1; n0 += len(e) {
				for r := range e {
					if n := n0 + r; n < n1 {
						q.DequantizeRow(row, n)
						for k := range e[r] {
							e[r][k] = float64(w[n*in+k]) - float64(row[k])
						}
					} else {
						clear(e[r])
					}
				}
				total += errorEnergy4(h, e[0], e[1], e[2], e[3])
			}
			sums[wk] = total
		}()
	}
	wg.Wait()
	var t float64
	for _, v := range sums {
		t += v
	}
	return t
}

// errorEnergy4 returns Σ_r e_rᵀ·h·e_r for four vectors of length n, with
// h the row-major [n, n] matrix, symmetric (a Hessian): only its upper
// triangle is read, eᵀhe = Σ_i e_i·(h_ii·e_i + 2·Σ_{k>i} h_ik·e_k).
func errorEnergy4(h, e0, e1, e2, e3 []float64) float64 {
	n := len(e0)
	e1, e2, e3 = e1[:n], e2[:n], e3[:n]
	var total float64
	for i := 0; i < n; i++ {
		a0, a1, a2, a3 := e0[i], e1[i], e2[i], e3[i]
		if a0 == 0 && a1 == 0 && a2 == 0 && a3 == 0 {
			continue
		}
		hr := h[i*n+i+1 : (i+1)*n]
		f0, f1, f2, f3 := e0[i+1:], e1[i+1:], e2[i+1:], e3[i+1:]
		f0, f1, f2, f3 = f0[:len(hr)], f1[:len(hr)], f2[:len(hr)], f3[:len(hr)]
		var s0, s1, s2, s3 float64
		for k, hv := range hr {
			s0 += hv * f0[k]
			s1 += hv * f1[k]
			s2 += hv * f2[k]
			s3 += hv * f3[k]
		}
		d := h[i*n+i]
		total += a0*(d*a0+2*s0) + a1*(d*a1+2*s1) + a2*(d*a2+2*s2) + a3*(d*a3+2*s3)
	}
	return total
}

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
