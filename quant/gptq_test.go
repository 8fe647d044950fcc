package quant

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
)

// refParams is QuantizeRTN's documented rule for one group, written out
// again: range [min(w,0), max(w,0)] (±max|w| when symmetric), scale =
// range/(2^b−1) rounded up to fp16, zero 2^(b−1) or round(−min/scale)
// (≥ 1 in the v1 convention, with the scale then reaching max).
func refParams(vals []float64, bits int, sym bool) (float64, float64) {
	maxq := math.Exp2(float64(bits)) - 1
	lo, hi := 0.0, 0.0
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if sym {
		hi = math.Max(-lo, hi)
		lo = -hi
	}
	if lo == 0 && hi == 0 {
		lo, hi = -1, 1
	}
	up := func(v float64) float64 {
		h := dtype.F32ToF16(float32(v))
		if float64(dtype.F16ToF32(h)) < v {
			h++
		}
		return float64(dtype.F16ToF32(h))
	}
	s := up((hi - lo) / maxq)
	if sym {
		return s, math.Exp2(float64(bits - 1))
	}
	z := math.Max(0, math.Min(maxq, math.RoundToEven(-lo/s)))
	if z == 0 {
		z, s = 1, up(hi/(maxq-1))
	}
	return s, z
}

// refGPTQ is a straightforward GPTQ: one column at a time, every later
// column updated at once, H⁻¹ by Gauss–Jordan elimination and its upper
// Cholesky factor computed directly; the group parameters are refParams or,
// with search, refSearchInt's.
func refGPTQ(w []float32, out, in int, h []float64, bits, group int, sym, actOrder, search bool) (q []uint8, scales, zeros []float64, gidx []int) {
	perm := make([]int, in)
	for i := range perm {
		perm[i] = i
	}
	if actOrder {
		sort.SliceStable(perm, func(a, b int) bool { return h[perm[a]*in+perm[a]] > h[perm[b]*in+perm[b]] })
	}
	W := make([][]float64, out)
	for n := range W {
		W[n] = make([]float64, in)
	}
	H := make([][]float64, in)
	for i := range H {
		H[i] = make([]float64, in)
	}
	for j, pj := range perm {
		for i, pi := range perm {
			H[i][j] = h[pi*in+pj]
		}
	}
	for j, pj := range perm {
		dead := h[pj*in+pj] == 0
		for n := range W {
			if !dead {
				W[n][j] = float64(w[n*in+pj])
			}
		}
		if dead {
			for i := range H {
				H[i][j], H[j][i] = 0, 0
			}
			H[j][j] = 1
		}
	}
	var mean float64
	for i := range H {
		mean += H[i][i]
	}
	mean /= float64(in)
	for i := range H {
		H[i][i] += 0.01 * mean
	}
	// Gauss–Jordan inverse
	A := make([][]float64, in)
	for i := range A {
		A[i] = make([]float64, 2*in)
		copy(A[i], H[i])
		A[i][in+i] = 1
	}
	for c := 0; c < in; c++ {
		p := c
		for r := c + 1; r < in; r++ {
			if math.Abs(A[r][c]) > math.Abs(A[p][c]) {
				p = r
			}
		}
		A[c], A[p] = A[p], A[c]
		d := A[c][c]
		for k := range A[c] {
			A[c][k] /= d
		}
		for r := 0; r < in; r++ {
			if r != c && A[r][c] != 0 {
				f := A[r][c]
				for k := range A[r] {
					A[r][k] -= f * A[c][k]
				}
			}
		}
	}
	// upper Cholesky of H⁻¹ = UᵀU
	U := make([][]float64, in)
	for i := range U {
		U[i] = make([]float64, in)
	}
	for i := 0; i < in; i++ {
		s := A[i][in+i]
		for k := 0; k < i; k++ {
			s -= U[k][i] * U[k][i]
		}
		U[i][i] = math.Sqrt(s)
		for j := i + 1; j < in; j++ {
			s := A[i][in+j]
			for k := 0; k < i; k++ {
				s -= U[k][i] * U[k][j]
			}
			U[i][j] = s / U[i][i]
		}
	}
	groups := in / group
	scales = make([]float64, groups*out)
	zeros = make([]float64, groups*out)
	qp := make([]uint8, out*in)
	maxq := math.Exp2(float64(bits)) - 1
	for j := 0; j < in; j++ {
		g := j / group
		if j%group == 0 {
			for n := 0; n < out; n++ {
				if search {
					scales[g*out+n], zeros[g*out+n] = refSearchInt(W[n][j:j+group], bits, sym, 1)
				} else {
					scales[g*out+n], zeros[g*out+n] = refParams(W[n][j:j+group], bits, sym)
				}
			}
		}
		for n := 0; n < out; n++ {
			s, z := scales[g*out+n], zeros[g*out+n]
			c := math.Max(0, math.Min(maxq, math.RoundToEven(W[n][j]/s)+z))
			qp[n*in+j] = uint8(c)
			e := (W[n][j] - (c-z)*s) / U[j][j]
			for k := j + 1; k < in; k++ {
				W[n][k] -= e * U[j][k]
			}
		}
	}
	q = make([]uint8, out*in)
	gidx = make([]int, in)
	for j, pj := range perm {
		gidx[pj] = j / group
		for n := 0; n < out; n++ {
			q[n*in+pj] = qp[n*in+j]
		}
	}
	return q, scales, zeros, gidx
}

// randomLayer returns a random weight and the Hessian XᵀX of correlated
// random inputs with one dead input channel.
func randomLayer(rng *rand.Rand, out, in, samples int) ([]float32, []float64) {
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	mix := make([]float64, in*in)
	for i := range mix {
		mix[i] = rng.NormFloat64() / math.Sqrt(float64(in))
	}
	for i := 0; i < in; i++ {
		mix[i*in+i] += 1 + 2*rng.Float64()
	}
	h := make([]float64, in*in)
	x := make([]float64, in)
	for t := 0; t < samples; t++ {
		z := make([]float64, in)
		for i := range z {
			z[i] = rng.NormFloat64()
		}
		for j := 0; j < in; j++ {
			var s float64
			for i := 0; i < in; i++ {
				s += z[i] * mix[i*in+j]
			}
			x[j] = s
		}
		x[5] = 0 // a dead input
		for i := 0; i < in; i++ {
			for j := 0; j < in; j++ {
				h[i*in+j] += x[i] * x[j]
			}
		}
	}
	return w, h
}

// TestGPTQMatchesReference compares QuantizeGPTQ (lazy batches, with
// group boundaries inside and across batches) with refGPTQ, with plain and
// searched group parameters: the codes, scales and zero points must be
// identical except where float rounding flips a tie (at most 0.2% of the
// codes; none in practice here).
func TestGPTQMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const out = 43 // GPTQ takes rows four at a time: 43 leaves three
	w, h := randomLayer(rng, out, 96, 400)
	for _, c := range []struct {
		bits, group, bs int
		sym, act        bool
	}{
		{4, 32, 128, true, false}, {3, 24, 16, false, false}, {3, 24, 16, true, true},
		{2, 96, 32, false, true}, {8, 48, 40, true, false}, {4, 0, 20, false, false},
	} {
		for _, search := range []bool{false, true} {
			spec := Spec{Format: GPTQ, Bits: c.bits, Group: c.group, Sym: c.sym, MaxScale: !search}
			q, st, err := QuantizeGPTQ(w, out, 96, h, spec, GPTQOptions{ActOrder: c.act, BlockSize: c.bs})
			if err != nil {
				t.Fatal(err)
			}
			group := c.group
			if group == 0 {
				group = 96
			}
			rq, rs, rz, rg := refGPTQ(w, out, 96, h, c.bits, group, c.sym, c.act, search)
			codes, err := q.Unpack()
			if err != nil {
				t.Fatal(err)
			}
			diff := 0
			for i := range rq {
				if codes.Q[i] != rq[i] {
					diff++
				}
			}
			for i := range rs {
				if float64(codes.Scales[i]) != rs[i] || float64(codes.Zeros[i]) != rz[i] {
					t.Fatalf("%+v search=%v: group parameter %d: (%v, %v), reference (%v, %v)", c, search, i, codes.Scales[i], codes.Zeros[i], rs[i], rz[i])
				}
			}
			for k := 0; k < 96; k++ {
				g := k / group
				if codes.GIdx != nil {
					g = int(codes.GIdx[k])
				}
				if g != rg[k] {
					t.Fatalf("%+v: g_idx[%d] = %d, reference %d", c, k, g, rg[k])
				}
			}
			if diff > len(rq)/500 {
				t.Fatalf("%+v: %d of %d codes differ from the reference", c, diff, len(rq))
			}
			t.Logf("%+v search=%v: %d codes differ; proxy error GPTQ %.4g, RTN %.4g (%.2f×)", c, search, diff, st.Error, st.RTNError, st.Error/st.RTNError)
			if st.Error >= st.RTNError {
				t.Errorf("%+v search=%v: GPTQ error %g not below RTN's %g", c, search, st.Error, st.RTNError)
			}
		}
	}
}

// TestProxyError compares ProxyError with the plain double sum
// Σ_n Σ_i Σ_k e_ni·h_ik·e_nk on random data (row counts that leave one to
// three rows past the blocks of four on each core). The two sum in
// different orders in float64: 1e-12 relative.
func TestProxyError(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, shape := range [][2]int{{1, 40}, {7, 56}, {13, 64}, {66, 32}} {
		out, in := shape[0], shape[1]
		w, h := randomLayer(rng, out, in, 3*in)
		q, err := QuantizeRTN(w, out, in, Spec{Format: GPTQ, Bits: 4, Group: 0, Sym: true})
		if err != nil {
			t.Fatal(err)
		}
		row := make([]float32, in)
		var want float64
		for n := 0; n < out; n++ {
			q.DequantizeRow(row, n)
			for i := 0; i < in; i++ {
				for k := 0; k < in; k++ {
					want += (float64(w[n*in+i]) - float64(row[i])) * h[i*in+k] * (float64(w[n*in+k]) - float64(row[k]))
				}
			}
		}
		got := ProxyError(w, q, h)
		if want <= 0 || math.Abs(got-want) > 1e-12*want {
			t.Errorf("[%d, %d]: ProxyError %.17g, plain sum %.17g", out, in, got, want)
		}
	}
}

func TestGPTQErrors(t *testing.T) {
	w := make([]float32, 32*32)
	h := make([]float64, 32*32)
	spec := Spec{Format: GPTQ, Bits: 4, Group: 32, Sym: true}
	if _, _, err := QuantizeGPTQ(w, 32, 32, h, spec, GPTQOptions{}); err == nil {
		t.Error("all-zero Hessian accepted")
	}
	for i := 0; i < 32; i++ {
		h[i*32+i] = 1
	}
	if _, _, err := QuantizeGPTQ(w, 32, 32, h[:100], spec, GPTQOptions{}); err == nil {
		t.Error("short Hessian accepted")
	}
	if _, _, err := QuantizeGPTQ(w, 32, 32, h, Spec{Format: GPTQ, Bits: 5, Group: 32}, GPTQOptions{}); err == nil {
		t.Error("5 bits accepted")
	}
	if _, _, err := QuantizeGPTQ(w, 32, 32, h, Spec{Format: GPTQ, Bits: 4, Group: 20}, GPTQOptions{}); err == nil {
		t.Error("group 20 of 32 accepted")
	}
	h[3] = math.NaN()
	if _, _, err := QuantizeGPTQ(w, 32, 32, h, spec, GPTQOptions{}); err == nil {
		t.Error("NaN Hessian accepted")
	}
	h[3] = 0
	if _, _, err := QuantizeGPTQ(w, 32, 32, h, spec, GPTQOptions{}); err != nil {
		t.Errorf("identity Hessian: %v", err)
	}
}

// TestOutputEnergy: OutputEnergy and traceForm (the blocked quadratic
// forms) against the plain triple sums on random data, edges included;
// tolerance 1e-12 relative (float64 sums in another order).
func TestOutputEnergy(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, shape := range [][2]int{{1, 40}, {7, 56}, {300, 64}, {66, 130}} {
		out, in := shape[0], shape[1]
		w, h := randomLayer(rng, out, in, 3*in)
		want := traceW(w, out, in, h)
		if got := OutputEnergy(w, out, in, h); want <= 0 || math.Abs(got-want) > 1e-12*want {
			t.Errorf("[%d, %d]: OutputEnergy %.17g, plain sum %.17g", out, in, got, want)
		}
		// the same as traceForm of Wᵀ ([in + 2, out]: rows past in ignored)
		a := make([]float64, (in+2)*out)
		for n := 0; n < out; n++ {
			for k := 0; k < in; k++ {
				a[k*out+n] = float64(w[n*in+k])
			}
		}
		for i := in * out; i < len(a); i++ {
			a[i] = 1e9
		}
		if got := traceForm(a, h, in, out); math.Abs(got-want) > 1e-12*want {
			t.Errorf("[%d, %d]: traceForm %.17g, plain sum %.17g", out, in, got, want)
		}
	}
}
