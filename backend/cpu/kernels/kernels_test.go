package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
)

// Tolerance. Every kernel accumulates in float32 and the reference in
// float64 from the same (exactly converted) weights, so the only difference
// is float32 rounding of the products and of the running sums. The classic
// bound for a float32 sum of n products is γ_n·Σ|x_k·w_k| with
// γ_n ≈ n·u, u = 2⁻²⁴ ≈ 6e-8; the kernels split each sum over 8 SIMD lanes
// and up to 4 chains (generic: 4 chains), so a chain holds at most K/8
// (K/4) terms and the worst case for our largest K = 2049 is about
// 260·u ≈ 1.6e-5 (3e-5), while the rounding errors of random data add up
// like a random walk, ≈ √n·u ≈ 1.4e-6. 1e-5·Σ|x_k·w_k| therefore holds
// with a wide margin in practice, yet any indexing error (a wrong, missing
// or duplicated term) costs about |x_k·w_k| ≈ Σ/K ≫ 1e-5·Σ and fails.
const relTol = 1e-5

// poison is the NaN bit pattern dst is filled with; entries that must not
// be written are checked to still hold exactly these bits.
const poison = 0x7fc0dead

type wtype int

const (
	tF32 wtype = iota
	tF16
	tBF16
)

func (t wtype) String() string { return [...]string{"F32", "F16", "BF16"}[t] }

var allTypes = []wtype{tF32, tF16, tBF16}

// problem is one random MatMul instance with its float64 reference.
type problem struct {
	t        wtype
	M, K, N  int
	x        []float32
	w32      []float32 // tF32
	w16      []uint16  // tF16, tBF16
	wf       []float64 // w converted exactly, for the reference
	ref, abs []float64 // [M*N]: Σ x·w and Σ|x·w|
}

// randX returns values uniform in ±[0.5, 2) with random signs: never zero,
// varied magnitudes.
func randX(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		f := float32(0.5 + 1.5*r.Float64())
		if r.IntN(2) == 0 {
			f = -f
		}
		v[i] = f
	}
	return v
}

// randW returns weights of a few orders of magnitude; for F16 one in 16
// is tiny enough to be a binary16 subnormal, so the conversions of those
// are exercised too.
func randW(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		f := float32(r.NormFloat64() * 0.1)
		if f == 0 {
			f = 0.01
		}
		if r.IntN(16) == 0 {
			f *= 1e-4
		}
		v[i] = f
	}
	return v
}

func newProblem(r *rand.Rand, t wtype, M, K, N int) *problem {
	p := &problem{t: t, M: M, K: K, N: N, x: randX(r, M*K)}
	w := randW(r, N*K)
	p.wf = make([]float64, N*K)
	switch t {
	case tF32:
		p.w32 = w
		for i, v := range w {
			p.wf[i] = float64(v)
		}
	case tF16:
		p.w16 = make([]uint16, len(w))
		for i, v := range w {
			p.w16[i] = dtype.F32ToF16(v)
			p.wf[i] = float64(dtype.F16ToF32(p.w16[i]))
		}
	case tBF16:
		p.w16 = make([]uint16, len(w))
		for i, v := range w {
			p.w16[i] = dtype.F32ToBF16(v)
			p.wf[i] = float64(dtype.BF16ToF32(p.w16[i]))
		}
	}
	p.ref = make([]float64, M*N)
	p.abs = make([]float64, M*N)
	for m := 0; m < M; m++ {
		for n := 0; n < N; n++ {
			var s, a float64
			for k := 0; k < K; k++ {
				v := float64(p.x[m*K+k]) * p.wf[n*K+k]
				s += v
				a += math.Abs(v)
			}
			p.ref[m*N+n] = s
			p.abs[m*N+n] = a
		}
	}
	return p
}

func (p *problem) run(dst []float32, ldd, n0, n1 int) {
	switch p.t {
	case tF32:
		MatMulF32(dst, ldd, p.x, p.M, p.K, p.w32, n0, n1)
	case tF16:
		MatMulF16(dst, ldd, p.x, p.M, p.K, p.w16, n0, n1)
	case tBF16:
		MatMulBF16(dst, ldd, p.x, p.M, p.K, p.w16, n0, n1)
	}
}

func poisoned(n int) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = math.Float32frombits(poison)
	}
	return d
}

// check runs p on [n0, n1) with row stride ldd into a poisoned dst (with
// slack after the last row) and verifies the written values against the
// reference and that nothing else was touched. It returns dst.
func (p *problem) check(t *testing.T, ldd, n0, n1 int) []float32 {
	t.Helper()
	size := 7
	if p.M > 0 {
		size += (p.M-1)*ldd + n1
	}
	dst := poisoned(size)
	p.run(dst, ldd, n0, n1)
	bad := 0
	for i, v := range dst {
		m, n := i/ldd, i%ldd
		inside := m < p.M && n >= n0 && n < n1
		if !inside {
			if math.Float32bits(v) != poison {
				t.Errorf("%v M=%d K=%d [%d,%d) ldd=%d: dst[%d] (m=%d n=%d) outside the output was written: %g",
					p.t, p.M, p.K, n0, n1, ldd, i, m, n, v)
				bad++
			}
		} else {
			ref, abs := p.ref[m*p.N+n], p.abs[m*p.N+n]
			if err := math.Abs(float64(v) - ref); !(err <= relTol*abs) {
				t.Errorf("%v M=%d K=%d [%d,%d) ldd=%d simd=%v: dst[%d,%d] = %g, want %g (err %.3g > %.3g)",
					p.t, p.M, p.K, n0, n1, ldd, useSIMD, m, n, v, ref, err, relTol*abs)
				bad++
			}
		}
		if bad > 10 {
			t.FailNow()
		}
	}
	return dst
}

// modes runs f on every code path this machine has: the AVX-512 kernels,
// the AVX2 kernels (AVX-512 switched off) and the portable fallback.
func modes(t *testing.T, f func(t *testing.T)) {
	saved, saved512 := useSIMD, useAVX512
	defer func() { useSIMD, useAVX512 = saved, saved512 }()
	if hasAVX512 {
		useSIMD, useAVX512 = true, true
		t.Run("avx512", f)
	} else {
		t.Log("no AVX-512 on this machine/build: the AVX-512 kernels are not tested")
	}
	if hasSIMD {
		useSIMD, useAVX512 = true, false
		t.Run("avx2", f)
	} else {
		t.Log("no SIMD support on this machine/build: only the fallback is tested")
	}
	useSIMD, useAVX512 = false, false
	t.Run("generic", f)
}

// outRanges returns [n0, n1) ranges of [0, N) with odd ends.
func outRanges(N int) [][2]int {
	rs := [][2]int{{0, N}}
	if N > 4 {
		rs = append(rs, [2]int{1, N - 2}, [2]int{N / 3, N/3 + 1})
	}
	if N >= 18 {
		rs = append(rs, [2]int{5, 5 + 13})
	}
	return rs
}

func TestMatMul(t *testing.T) {
	Ks := []int{1, 7, 8, 9, 16, 33, 100, 257, 2049}
	Ms := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 64}
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, typ := range allTypes {
			for _, K := range Ks {
				for _, M := range Ms {
					N := 19 + r.IntN(20)
					if K*M > 4000 {
						N = 11 + r.IntN(6)
					}
					if K*M > 40000 {
						N = 5 + r.IntN(4)
					}
					p := newProblem(r, typ, M, K, N)
					for _, rg := range outRanges(N) {
						p.check(t, rg[1]+3, rg[0], rg[1]) // ldd > n1
						p.check(t, rg[1], rg[0], rg[1])   // ldd == n1
					}
				}
			}
		}
	})
}

// TestMatMulLarge covers several K blocks (K = 2049 > blockK), several weight
// panels (N range > blockN) and a 4-row-aligned M with leftover rows.
func TestMatMulLarge(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		for _, typ := range allTypes {
			for _, MK := range [][2]int{{13, 2049}, {8, 1031}, {2, 3000}, {1, 4100}} {
				p := newProblem(r, typ, MK[0], MK[1], 263)
				p.check(t, 263, 0, 263)
				p.check(t, 270, 7, 251)
			}
		}
	})
}

// TestSIMDMatchesGeneric compares the two paths with each other on the same
// inputs: each is within relTol of the float64 reference, so they are
// within 2·relTol of each other.
func TestSIMDMatchesGeneric(t *testing.T) {
	if !hasSIMD {
		t.Skip("no SIMD path on this machine/build")
	}
	saved, saved512 := useSIMD, useAVX512
	defer func() { useSIMD, useAVX512 = saved, saved512 }()
	useAVX512 = false
	r := rand.New(rand.NewPCG(5, 6))
	for _, typ := range allTypes {
		for _, MK := range [][2]int{{1, 2048}, {3, 517}, {4, 64}, {17, 1029}} {
			M, K, N := MK[0], MK[1], 41
			p := newProblem(r, typ, M, K, N)
			useSIMD = true
			a := poisoned(M * N)
			p.run(a, N, 0, N)
			useSIMD = false
			b := poisoned(M * N)
			p.run(b, N, 0, N)
			for i := range a {
				if d := math.Abs(float64(a[i]) - float64(b[i])); !(d <= 2*relTol*p.abs[i]) {
					t.Errorf("%v M=%d K=%d: simd %g vs generic %g at %d", typ, M, K, a[i], b[i], i)
				}
			}
		}
	}
}

// TestConcurrent fills one dst from two goroutines on disjoint ranges, the
// way the backend calls the kernels.
func TestConcurrent(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(7, 8))
		for _, typ := range allTypes {
			for _, M := range []int{1, 2, 9} {
				p := newProblem(r, typ, M, 300, 257)
				dst := poisoned(M * 257)
				var wg sync.WaitGroup
				for _, rg := range [][2]int{{0, 130}, {130, 257}} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 20 {
							p.run(dst, 257, rg[0], rg[1])
						}
					}()
				}
				wg.Wait()
				for i, v := range dst {
					if err := math.Abs(float64(v) - p.ref[i]); !(err <= relTol*p.abs[i]) {
						t.Fatalf("%v M=%d: dst[%d] = %g, want %g", typ, M, i, v, p.ref[i])
					}
				}
			}
		}
	})
}

// TestConversionExact feeds every finite F16 and BF16 bit pattern through
// the kernels with one-hot x rows, so each output must be exactly one
// converted weight (subnormals included). M = 1 covers the on-the-fly
// conversion of the matrix-vector kernels, M = 4 the panel conversion of
// the prefill path.
func TestConversionExact(t *testing.T) {
	const K = 16
	modes(t, func(t *testing.T) {
		for _, typ := range []wtype{tF16, tBF16} {
			conv := dtype.F16ToF32
			if typ == tBF16 {
				conv = dtype.BF16ToF32
			}
			w := make([]uint16, 1<<16)
			for i := range w {
				w[i] = uint16(i)
				if f := conv(uint16(i)); math.IsInf(float64(f), 0) || math.IsNaN(float64(f)) {
					w[i] = 0x3c00 // keep 0·w finite
				}
			}
			N := len(w) / K
			for _, M := range []int{1, 4} {
				for p0 := 0; p0 < K; p0 += M {
					x := make([]float32, M*K)
					for m := 0; m < M; m++ {
						x[m*K+p0+m] = 1
					}
					dst := make([]float32, M*N)
					if typ == tF16 {
						MatMulF16(dst, N, x, M, K, w, 0, N)
					} else {
						MatMulBF16(dst, N, x, M, K, w, 0, N)
					}
					for m := 0; m < M; m++ {
						for n := 0; n < N; n++ {
							want := conv(w[n*K+p0+m])
							if got := dst[m*N+n]; got != want {
								t.Fatalf("%v M=%d: pattern %#04x converted to %g, want %g", typ, M, w[n*K+p0+m], got, want)
							}
						}
					}
				}
			}
		}
	})
}

func TestZeroSizes(t *testing.T) {
	modes(t, func(t *testing.T) {
		// K = 0: the empty sum, dst is set to 0 on the range only.
		dst := poisoned(10)
		MatMulBF16(dst, 5, nil, 2, 0, nil, 1, 3)
		for i, v := range dst {
			n := i % 5
			if n >= 1 && n < 3 {
				if v != 0 {
					t.Errorf("K=0: dst[%d] = %g, want 0", i, v)
				}
			} else if math.Float32bits(v) != poison {
				t.Errorf("K=0: dst[%d] touched", i)
			}
		}
		// M = 0 or an empty range: nothing happens, even with empty slices.
		MatMulF32(nil, 0, nil, 0, 10, nil, 0, 5)
		MatMulF16(nil, 0, make([]float32, 20), 2, 10, nil, 3, 3)
		if Dot(nil, nil) != 0 {
			t.Error("Dot(nil, nil) != 0")
		}
		Axpy(2, nil, nil)
	})
}

func TestBadArgsPanic(t *testing.T) {
	x := make([]float32, 8)
	w := make([]float32, 8)
	dst := make([]float32, 8)
	cases := []struct {
		name, msg string
		f         func()
	}{
		{"negative M", "negative size", func() { MatMulF32(dst, 4, x, -1, 4, w, 0, 1) }},
		{"bad range", "bad output range", func() { MatMulF32(dst, 4, x, 1, 4, w, 2, 1) }},
		{"short x", "len(x)", func() { MatMulF32(dst, 4, x, 3, 4, w, 0, 1) }},
		{"short w", "len(w)", func() { MatMulF32(dst, 4, x, 1, 4, w, 0, 3) }},
		{"overlapping rows", "ldd", func() { MatMulF32(dst, 1, x, 2, 4, w, 0, 2) }},
		{"short dst", "len(dst)", func() { MatMulF32(dst[:5], 4, x, 2, 4, w, 0, 2) }},
		{"dot lengths", "len(a)", func() { Dot(x, w[:3]) }},
		{"axpy lengths", "len(x)", func() { Axpy(1, x, w[:3]) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("no panic")
				}
				if s := fmt.Sprint(r); !strings.Contains(s, c.msg) {
					t.Fatalf("panic %q does not mention %q", s, c.msg)
				}
			}()
			c.f()
		})
	}
}

func TestDotAxpy(t *testing.T) {
	modes(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(9, 10))
		lengths := []int{1, 2, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 96, 100, 127, 128, 129, 255, 256, 1003}
		for _, n := range lengths {
			a, b := randX(r, n+3), randW(r, n+3)
			var ref, abs float64
			for i := 0; i < n; i++ {
				ref += float64(a[i]) * float64(b[i])
				abs += math.Abs(float64(a[i]) * float64(b[i]))
			}
			if got := Dot(a[:n], b[:n]); !(math.Abs(float64(got)-ref) <= relTol*abs) {
				t.Errorf("Dot n=%d: %g, want %g", n, got, ref)
			}

			alpha := float32(r.NormFloat64())
			y := randX(r, n+3)
			y0 := append([]float32(nil), y...)
			Axpy(alpha, a[:n], y[:n])
			for i := range y {
				if i >= n {
					if y[i] != y0[i] {
						t.Errorf("Axpy n=%d wrote y[%d]", n, i)
					}
					continue
				}
				// one rounding (FMA) or two (multiply, add)
				want := float64(y0[i]) + float64(alpha)*float64(a[i])
				tol := 2 * 0x1p-24 * (math.Abs(float64(y0[i])) + math.Abs(float64(alpha)*float64(a[i])))
				if math.Abs(float64(y[i])-want) > tol {
					t.Errorf("Axpy n=%d: y[%d] = %g, want %g", n, i, y[i], want)
				}
			}
		}
	})
}

func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	r := rand.New(rand.NewPCG(11, 12))
	modes(t, func(t *testing.T) {
		for _, typ := range allTypes {
			for _, M := range []int{1, 3, 64} {
				p := newProblem(r, typ, M, 200, 50)
				dst := make([]float32, M*50)
				if n := testing.AllocsPerRun(20, func() { p.run(dst, 50, 3, 47) }); n != 0 {
					t.Errorf("%v M=%d: %v allocations per call", typ, M, n)
				}
			}
		}
	})
}

// TestBatchInvariance checks that on the AVX-512 path every output element
// is bitwise the same whatever the number of x rows M of the call (the
// server relies on a request producing the same tokens batched or alone):
// the matrix-vector kernels (small M) and the prefill kernels (large M)
// add the same products in the same order.
func TestBatchInvariance(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 on this machine/build")
	}
	saved, saved512 := useSIMD, useAVX512
	defer func() { useSIMD, useAVX512 = saved, saved512 }()
	useSIMD, useAVX512 = true, true
	r := rand.New(rand.NewPCG(15, 16))
	for _, typ := range allTypes {
		for _, K := range []int{5, 16, 100, 1024, 1030, 2049, 3000} {
			const M, N = 64, 37
			p := newProblem(r, typ, M, K, N)
			all := poisoned(M * N)
			p.run(all, N, 0, N)
			for _, mc := range []int{1, 2, 3, 4, 5, 7, 9, 16} {
				for m0 := 0; m0+mc <= M; m0 += 13 {
					q := *p
					q.M, q.x = mc, p.x[m0*K:(m0+mc)*K]
					part := poisoned(mc * N)
					q.run(part, N, 0, N)
					for i, v := range part {
						if math.Float32bits(v) != math.Float32bits(all[m0*N+i]) {
							t.Fatalf("%v K=%d: row %d col %d: %g with M=%d, %g with M=%d", typ, K, m0+i/N, i%N, v, mc, all[m0*N+i], M)
						}
					}
				}
			}
		}
	}
}

// TestToF32 checks the 16-bit → float32 widening against dtype's scalar
// conversions, exactly, on random bit patterns (NaNs and infinities
// included) of odd lengths, on the SIMD and the portable path.
func TestToF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, simd := range []bool{true, false} {
		useSIMD = simd && hasSIMD
		for _, n := range []int{0, 1, 7, 8, 9, 31, 64, 1001} {
			src := make([]uint16, n)
			for i := range src {
				src[i] = uint16(rng.Uint32())
			}
			got := make([]float32, n+1)
			got[n] = 42
			for _, bf := range []bool{false, true} {
				if bf {
					BF16ToF32(got, src)
				} else {
					F16ToF32(got, src)
				}
				for i, h := range src {
					want := dtype.F16ToF32(h)
					if bf {
						want = dtype.BF16ToF32(h)
					}
					if math.Float32bits(got[i]) != math.Float32bits(want) && !(want != want && got[i] != got[i]) {
						t.Fatalf("simd %v bf16 %v n %d: element %d (%#04x) = %g, want %g", simd, bf, n, i, h, got[i], want)
					}
				}
				if got[n] != 42 {
					t.Fatalf("wrote past the end")
				}
			}
		}
	}
	useSIMD = hasSIMD
}

// TestMemRead checks the read probe's result — the XOR of the words read —
// against a plain loop on random bytes, so that every byte of the range is
// known to be read (a stream skipped or read twice changes the XOR).
func TestMemRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{0, 256, 512, 768, 4096, 256 * 1001} {
		buf := make([]byte, n+8)
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		var want uint64
		for i := 0; i < n; i += 8 {
			want ^= uint64(buf[i]) | uint64(buf[i+1])<<8 | uint64(buf[i+2])<<16 | uint64(buf[i+3])<<24 |
				uint64(buf[i+4])<<32 | uint64(buf[i+5])<<40 | uint64(buf[i+6])<<48 | uint64(buf[i+7])<<56
		}
		if got := MemRead(&buf[0], n); got != want {
			t.Errorf("MemRead of %d bytes = %#x, want %#x", n, got, want)
		}
	}
}
