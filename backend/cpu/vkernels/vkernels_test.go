package vkernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// Every kernel is compared with a float64 reference on random data (never
// zeros), on each implementation the machine supports (AVX-512, AVX2, Go),
// forced in turn through level, at lengths that exercise every loop and
// tail: 1, 7, 15, 17, 33, 100, 1023 and a few more.

var tailLens = []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1023, 4096 + 5}

// poison is the NaN bit pattern that guard elements are filled with; they
// must still hold exactly these bits after a call.
const poison = 0x7fc0dead

// eachLevel runs f once per implementation this machine supports, with
// level forced to it.
func eachLevel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	best := detectLevel()
	defer func() { level = best }()
	names := []string{"go", "avx2", "avx512"}
	for l := levelGo; l <= levelAVX512; l++ {
		if l > best {
			t.Logf("%s: not supported by this CPU, not tested", names[l])
			continue
		}
		level = l
		t.Run(names[l], f)
	}
}

// guarded returns a slice of n elements whose backing array holds `guard`
// poisoned elements before and after it, and a check that they are intact.
func guarded(n, guard int) ([]float32, func(t *testing.T)) {
	buf := make([]float32, n+2*guard)
	for i := range buf {
		buf[i] = math.Float32frombits(poison)
	}
	s := buf[guard : guard+n : guard+n]
	return s, func(t *testing.T) {
		t.Helper()
		for i, v := range buf {
			if (i < guard || i >= guard+n) && math.Float32bits(v) != poison {
				t.Fatalf("guard element %d (of %d before and after %d) overwritten: %g", i, guard, n, v)
			}
		}
	}
}

// randSigned returns n values uniform in ±[lo, hi) with random signs.
func randSigned(r *rand.Rand, n int, lo, hi float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		f := float32(lo + (hi-lo)*r.Float64())
		if r.IntN(2) == 0 {
			f = -f
		}
		v[i] = f
	}
	return v
}

// ulp returns the spacing of float32 numbers at |x| (the smallest
// subnormal at and below the smallest normal).
func ulp(x float32) float64 {
	a := math.Abs(float64(x))
	if a < 0x1p-126 {
		return 0x1p-149
	}
	_, e := math.Frexp(a)
	return math.Ldexp(1, e-24)
}

// ---- e^x ----

// expRef is e^x correctly rounded to float32 (math.Exp's error, < 1 ulp of
// float64, cannot move a float32 rounding except at exact ties, which e^x
// of a float32 never hits).
func expRef(x float32) float32 { return float32(math.Exp(float64(x))) }

// checkExp fails unless got is within 2 ulp of e^x (the documented bound;
// the reduction and the polynomial each add well under one ulp), or both
// are NaN, or both are the same infinity.
func checkExp(t *testing.T, x, got float32) {
	t.Helper()
	want := expRef(x)
	switch {
	case x != x:
		if got == got {
			t.Fatalf("e^NaN = %g", got)
		}
		return
	case math.IsInf(float64(want), 1):
		if !math.IsInf(float64(got), 1) {
			t.Fatalf("e^%g = %g, want +Inf", x, got)
		}
		return
	}
	if d := math.Abs(float64(got) - float64(want)); d > 2*ulp(want) || math.IsInf(float64(got), 0) {
		t.Fatalf("e^%g = %g (%#x), want %g (%#x): %.2f ulp", x, got, math.Float32bits(got), want, math.Float32bits(want), d/ulp(want))
	}
}

// expSpecials are the edges of e^x: zeros, infinities, NaN, the overflow
// threshold 88.72284 (largest finite result just below it), the smallest
// normal result near -87.33655, subnormal results, the underflow to zero
// near -103.97208, values whose n = round(x·log2e) is a tie, and huge
// arguments.
var expSpecials = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 1e-30, -1e-30, 1e-45, -1e-45,
	88.72283, 88.72284, 88.7229, 88.8, 88.9, 89, 100, 1e10, math.MaxFloat32, float32(math.Inf(1)),
	-87.33654, -87.33655, -87.3366, -90, -100, -103.2789, -103.97207, -103.97208, -103.9721, -104, -104.1,
	-150, -1e10, -math.MaxFloat32, float32(math.Inf(-1)),
	float32(math.NaN()), math.Float32frombits(0xffc00001), math.Float32frombits(0x7f800001),
	0.5 * math.Ln2, -0.5 * math.Ln2, 1.5 * math.Ln2, -1.5 * math.Ln2, 63.5 * math.Ln2, -100.5 * math.Ln2,
}

func TestExp(t *testing.T) {
	// A sweep of float32 bit patterns over the whole finite range, every
	// 101st (so every mantissa bit varies), both signs: all exponents, the
	// ranges of overflow, subnormal results and underflow included, 44
	// million arguments. The reference is computed once per chunk for all
	// paths.
	best := detectLevel()
	defer func() { level = best }()
	const chunk = 1 << 20
	xs, want, got := make([]float32, 0, chunk+len(expSpecials)), make([]float32, chunk+len(expSpecials)), make([]float32, chunk+len(expSpecials))
	for b := uint64(0); b < 0x7f800000; {
		xs = xs[:0]
		for ; b < 0x7f800000 && len(xs) < chunk; b += 101 {
			xs = append(xs, math.Float32frombits(uint32(b)), math.Float32frombits(uint32(b)|1<<31))
		}
		if b >= 0x7f800000 {
			xs = append(xs, expSpecials...)
		}
		for i, x := range xs {
			want[i] = expRef(x)
		}
		for level = levelGo; level <= best; level++ {
			Exp(got[:len(xs)], xs)
			for i, x := range xs {
				w, g := want[i], got[i]
				if g == w || math.Abs(float64(g)-float64(w)) <= 2*ulp(w) && !math.IsInf(float64(g), 0) {
					continue
				}
				t.Logf("level %s", ISA())
				checkExp(t, x, g) // NaN and ±Inf, or the failure message
			}
		}
	}
	// every float32 within 4096 steps of the edges: overflow, the smallest
	// normal result, underflow to zero
	var edges []float32
	for _, e := range []float32{88.72284, -87.33655, -103.97208} {
		b := math.Float32bits(e)
		for d := uint32(0); d < 4096; d++ {
			edges = append(edges, math.Float32frombits(b-d), math.Float32frombits(b+d))
		}
	}
	eachLevel(t, func(t *testing.T) {
		got := make([]float32, len(edges))
		Exp(got, edges)
		for i, x := range edges {
			checkExp(t, x, got[i])
		}
		// every length and tail, in place and into a guarded dst
		r := rand.New(rand.NewPCG(1, 2))
		for _, n := range tailLens {
			src := randSigned(r, n, 0.01, 100)
			dst, check := guarded(n, 17)
			Exp(dst, src)
			check(t)
			for i, x := range src {
				checkExp(t, x, dst[i])
			}
			Exp(src, src)
			for i := range src {
				if src[i] != dst[i] {
					t.Fatalf("n=%d: in place e^x[%d] = %g, out of place %g", n, i, src[i], dst[i])
				}
			}
		}
	})
}

// TestExpMatchesPaths checks that the paths agree with the Go path to
// within 1 ulp on random arguments (they share the method; the SIMD paths
// fuse the reduction's multiply-adds).
func TestExpMatchesPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	xs := randSigned(r, 100_000, 0, 110)
	ref := make([]float32, len(xs))
	expGo(ref, xs)
	eachLevel(t, func(t *testing.T) {
		got := make([]float32, len(xs))
		Exp(got, xs)
		for i := range xs {
			if d := math.Abs(float64(got[i]) - float64(ref[i])); d > ulp(ref[i]) {
				t.Fatalf("e^%g = %g, Go path %g", xs[i], got[i], ref[i])
			}
		}
	})
}

// ---- SiLU·up ----

// TestSiLUMul: within 4 ulp-of-result of the float64 value (e^x 2 ulp,
// then the addition, the division and the product ½ ulp each), plus the
// smallest subnormal for results that underflow.
func TestSiLUMul(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, n := range tailLens {
			gate := randSigned(r, n, 0.001, 12)
			up := randSigned(r, n, 0.01, 4)
			for i := 0; i < n; i += 13 { // extremes: SiLU saturating and underflowing
				gate[i] *= 8
			}
			if n > 5 {
				gate[1], gate[3], gate[5] = -100, 95, float32(math.Inf(1))
			}
			dst, check := guarded(n, 17)
			SiLUMul(dst, gate, up)
			check(t)
			for i := range gate {
				g, u := float64(gate[i]), float64(up[i])
				want := g / (1 + math.Exp(-g)) * u
				if math.IsInf(g, 1) {
					want = math.Inf(1) * math.Copysign(1, u)
					if float64(dst[i]) != want {
						t.Fatalf("n=%d: silu(%g)·%g = %g, want %g", n, g, u, dst[i], want)
					}
					continue
				}
				// plus 2⁻¹²⁰: for gate < −88.7 e^−gate overflows float32
				// and the result is ±0 instead of a magnitude < 1e-36,
				// as in the scalar float32 expression
				tol := 4*ulp(float32(want)) + 0x1p-120
				if d := math.Abs(float64(dst[i]) - want); !(d <= tol) {
					t.Fatalf("n=%d: silu(%g)·%g = %g, want %g (%.2f ulp)", n, g, u, dst[i], want, d/ulp(float32(want)))
				}
			}
			// in place, over gate and over up
			g2, u2 := append([]float32(nil), gate...), append([]float32(nil), up...)
			SiLUMul(g2, g2, up)
			SiLUMul(u2, gate, u2)
			for i := range dst {
				if g2[i] != dst[i] || u2[i] != dst[i] {
					t.Fatalf("n=%d: in place %g, %g != %g", n, g2[i], u2[i], dst[i])
				}
			}
		}
	})
}

// ---- softmax ----

// softmaxRef returns softmax(x·scale) in float64 and the arguments
// x·scale − max.
func softmaxRef(x []float32, scale float32) (p, arg []float64) {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, float64(v)*float64(scale))
	}
	p, arg = make([]float64, len(x)), make([]float64, len(x))
	var s float64
	for i, v := range x {
		arg[i] = float64(v)*float64(scale) - m
		p[i] = math.Exp(arg[i])
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p, arg
}

// TestSoftmaxScaled: each output within (12 + |x·scale| + |arg| + 4√n)·2⁻²⁴
// of its float64 value, relatively: e^x's 2 ulp and the final reciprocal
// and product (≤ 4·2⁻²⁴ relative with the ulp-to-value ratio), the
// rounding of the argument arg = x·scale − m (SIMD: one rounding, ≤
// |arg|·2⁻²⁴; Go: x·scale rounded first, ≤ |x·scale|·2⁻²⁴ more; an
// absolute error in the exponent is a relative one in the result), and the
// float32 sum, whose error on these random rows grows like √n (the worst
// case n·2⁻²⁴ is not approached by fixed-seed data).
func TestSoftmaxScaled(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, n := range tailLens {
			for _, scale := range []float32{0.125, 1, -0.7} {
				x := randSigned(r, n, 0.01, 12)
				if n > 4 {
					x[2] = float32(math.Inf(-1) * float64(scale)) // masked position: weight 0
				}
				p, arg := softmaxRef(x, scale)
				buf, check := guarded(n, 17)
				copy(buf, x)
				SoftmaxScaled(buf, scale)
				check(t)
				var sum float64
				for i := range p {
					if p[i] == 0 { // a -Inf element
						if buf[i] != 0 {
							t.Fatalf("n=%d: p[%d] = %g for x = %g, want 0", n, i, buf[i], x[i])
						}
						continue
					}
					xs := math.Abs(float64(x[i]) * float64(scale))
					tol := p[i] * (12 + xs + math.Abs(arg[i]) + 4*math.Sqrt(float64(n))) * 0x1p-24
					if d := math.Abs(float64(buf[i]) - p[i]); !(d <= tol+0x1p-149) {
						t.Fatalf("n=%d scale=%g: p[%d] = %g, want %g (rel %.3g, tol %.3g)", n, scale, i, buf[i], p[i], d/p[i], tol/p[i])
					}
					sum += float64(buf[i])
				}
				if math.Abs(sum-1) > 1e-5 {
					t.Fatalf("n=%d: Σp = %v", n, sum)
				}
			}
		}
		// edges: one element, all equal, a NaN, an all -Inf row
		one := []float32{3}
		SoftmaxScaled(one, 0.5)
		if one[0] != 1 {
			t.Fatalf("softmax of one element = %g", one[0])
		}
		eq := []float32{2, 2, 2, 2, 2, 2, 2, 2, 2, 2}
		SoftmaxScaled(eq, 1)
		for _, v := range eq {
			if math.Abs(float64(v)-0.1) > 1e-7 {
				t.Fatalf("softmax of equal elements: %v", eq)
			}
		}
		nan := []float32{1, 2, float32(math.NaN()), 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}
		SoftmaxScaled(nan, 1)
		for _, v := range nan {
			if v == v {
				t.Fatalf("softmax with a NaN: %v", nan)
			}
		}
		SoftmaxScaled(nil, 1)
	})
}

// TestSoftmaxPieces checks MaxScaled (exact), ExpSum's stores and sum, and
// Scale (exact) directly.
func TestSoftmaxPieces(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		for _, n := range tailLens {
			for _, scale := range []float32{0.3, -2} {
				x := randSigned(r, n, 0.01, 30)
				want := float32(math.Inf(-1))
				for _, v := range x {
					want = max(want, v*scale)
				}
				if got := MaxScaled(x, scale); got != want {
					t.Fatalf("n=%d: MaxScaled = %g, want %g", n, got, want)
				}
				buf, check := guarded(n, 17)
				copy(buf, x)
				s := ExpSum(buf, scale, want)
				check(t)
				var ref, abs float64
				for i, v := range x {
					a := float64(v)*float64(scale) - float64(want)
					e := math.Exp(a)
					// e^x's 2 ulp, the argument's rounding (see TestSoftmaxScaled)
					tol := e*(4+math.Abs(a)+math.Abs(float64(v)*float64(scale)))*0x1p-24 + 0x1p-149
					if d := math.Abs(float64(buf[i]) - e); !(d <= tol) {
						t.Fatalf("n=%d: ExpSum x[%d] = %g, want %g", n, i, buf[i], e)
					}
					ref += float64(buf[i])
					abs += math.Abs(float64(buf[i]))
				}
				// the sum of the stored terms, to float32 summation error
				if d := math.Abs(float64(s) - ref); d > float64(n/8+5)*0x1p-24*abs {
					t.Fatalf("n=%d: ExpSum returned %g, terms sum to %g", n, s, ref)
				}
				pre := append([]float32(nil), buf...)
				Scale(buf, 0.75)
				check(t)
				for i := range buf {
					if buf[i] != pre[i]*0.75 {
						t.Fatalf("n=%d: Scale x[%d] = %g, want %g", n, i, buf[i], pre[i]*0.75)
					}
				}
			}
		}
		if m := MaxScaled(nil, 1); !math.IsInf(float64(m), -1) {
			t.Fatalf("MaxScaled(nil) = %g", m)
		}
		if s := ExpSum(nil, 1, 0); s != 0 {
			t.Fatalf("ExpSum(nil) = %g", s)
		}
	})
}

func TestScale(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(11, 12))
		for _, n := range tailLens {
			x := randSigned(r, n, 0.01, 30)
			buf, check := guarded(n, 17)
			copy(buf, x)
			Scale(buf, -1.7)
			check(t)
			for i := range x {
				if want := x[i] * -1.7; buf[i] != want {
					t.Fatalf("n=%d: Scale x[%d] = %g, want %g", n, i, buf[i], want)
				}
			}
		}
	})
}

// ---- RMSNorm ----

// TestRMSNorm compares with the float64 formula, within 2 ulp of the
// result (r and the two products are rounded to float32: ½ ulp each, plus
// the ulp-to-value slack), and with the backend's scalar loop (float64
// sum, then float32 products in the same order), within 1 ulp (the sums
// may round r differently in rare cases).
func TestRMSNorm(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(13, 14))
		for _, n := range append(tailLens, 896, 2048+3) {
			x := randSigned(r, n, 0.001, 3)
			w := randSigned(r, n, 0.5, 1.5)
			const eps = 1e-6
			var ss float64
			for _, v := range x {
				ss += float64(v) * float64(v)
			}
			rr := 1 / math.Sqrt(ss/float64(n)+eps)
			r32 := float32(rr)
			dst, check := guarded(n, 17)
			RMSNorm(dst, x, w, eps)
			check(t)
			for i := range x {
				want := float64(x[i]) * rr * float64(w[i])
				if d := math.Abs(float64(dst[i]) - want); d > 2*ulp(float32(want)) {
					t.Fatalf("n=%d: RMSNorm[%d] = %g, want %g (%.2f ulp)", n, i, dst[i], want, d/ulp(float32(want)))
				}
				scalar := x[i] * r32 * w[i]
				if d := math.Abs(float64(dst[i]) - float64(scalar)); d > ulp(scalar) {
					t.Fatalf("n=%d: RMSNorm[%d] = %g, scalar loop %g", n, i, dst[i], scalar)
				}
			}
			RMSNorm(x, x, w, eps) // in place
			for i := range x {
				if x[i] != dst[i] {
					t.Fatalf("n=%d: in place %g != %g", n, x[i], dst[i])
				}
			}
		}
		// the float64 sum of squares itself, against a float64 loop
		for _, n := range tailLens {
			x := randSigned(r, n, 0.001, 100)
			var want float64
			for _, v := range x {
				want += float64(v) * float64(v)
			}
			var got float64
			switch level {
			case levelAVX512:
				got = sumSquaresZ(&x[0], n)
			case levelAVX2:
				got = sumSquaresY(&x[0], n)
			default:
				got = sumSquaresGo(x)
			}
			if math.Abs(got-want) > 1e-13*want {
				t.Fatalf("n=%d: Σx² = %v, want %v", n, got, want)
			}
		}
	})
}

func TestPanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	a, b := make([]float32, 4), make([]float32, 5)
	mustPanic("Exp", func() { Exp(a, b) })
	mustPanic("SiLUMul", func() { SiLUMul(a, a, b) })
	mustPanic("RMSNorm", func() { RMSNorm(a, a, b, 1) })
	mustPanic("BlockScores short keys", func() { BlockScores(a, 2, a, 2, b, 2, 3) })
	mustPanic("BlockScores lds", func() { BlockScores(b, 1, a, 2, a, 2, 1) })
	mustPanic("BlockValues short out", func() { BlockValues(a, a, 2, 2, a, 2, 2, 3) })
	mustPanic("BlockValues negative", func() { BlockValues(a, a, 2, -1, a, 2, 2, 2) })
	mustPanic("BlockScoresT ldk", func() { BlockScoresT(a, 2, a, 2, a, 1, 2, 2) })
}

func TestISA(t *testing.T) {
	t.Logf("ISA: %s", ISA())
	want := map[int]string{levelGo: "go", levelAVX2: "avx2", levelAVX512: "avx512"}[detectLevel()]
	if ISA() != want {
		t.Fatalf("ISA() = %q, want %q", ISA(), want)
	}
}

func (p *attnCase) String() string {
	return fmt.Sprintf("g=%d n=%d dim=%d", p.g, p.n, p.dim)
}

// TestPrefetch runs the hint over ranges of every length up to a few lines
// and of a large buffer: it must read nothing past the range (the guard
// page test of other kernels covers overruns at the end of a mapping) and
// change nothing.
func TestPrefetch(t *testing.T) {
	buf := make([]byte, 1<<16)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for n := 0; n <= 200; n++ {
		Prefetch(unsafe.Pointer(&buf[len(buf)-max(n, 1)]), n)
	}
	Prefetch(unsafe.Pointer(&buf[0]), len(buf))
	for i := range buf {
		if buf[i] != byte(i*7) {
			t.Fatalf("byte %d changed", i)
		}
	}
}
