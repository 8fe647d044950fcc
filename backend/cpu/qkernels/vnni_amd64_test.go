//go:build amd64 && !purego

package qkernels

import (
	"fmt"
	"math"
	"math/rand"
	"runtime"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// vnniPrepRef is the plain form of gptqVPrepZ for one unit of 32 inputs:
// the 128-byte x block (three digit arrays, byte p for input order(p),
// then the factor, ΣX and its two halves' sums) and the unit's sum.
func vnniPrepRef(x []float32, order func(p int) int) (blk [128]byte, sum float32) {
	var half [2]int32
	var maxBits uint32
	for _, v := range x {
		maxBits = max(maxBits, math.Float32bits(v)&0x7fffffff)
	}
	var factor float32
	switch {
	case maxBits >= 0x7f800000:
		factor = float32(math.NaN())
	case maxBits != 0:
		E := int(maxBits >> 23)
		factor = float32(math.Ldexp(1, E-148))
		for p := 0; p < 32; p++ {
			X := int32(math.RoundToEven(math.Ldexp(float64(x[order(p)]), 148-E)))
			d0 := int8(X)
			X1 := (X - int32(d0)) >> 8
			d1 := int8(X1)
			d2 := int8((X1 - int32(d1)) >> 8)
			blk[p], blk[32+p], blk[64+p] = byte(d0), byte(d1), byte(d2)
			half[p/16] += X
		}
	}
	*(*float32)(unsafe.Pointer(&blk[96])) = factor
	*(*int32)(unsafe.Pointer(&blk[100])) = half[0] + half[1]
	*(*int32)(unsafe.Pointer(&blk[104])) = half[0]
	*(*int32)(unsafe.Pointer(&blk[108])) = half[1]
	return blk, sum64(x)
}

// TestVNNIPrep checks gptqVPrepZ byte for byte (digits, factor, the sums)
// against vnniPrepRef on
// random units and on the edges: zeros, a subnormal or the largest finite
// maximum, Inf and NaN, and values that round to ±2^22; and that the
// digits give back x: Σ_d 2^(8d)·d_d·factor is x within half a step of
// 2^-22 of the unit's largest |x|.
func TestVNNIPrep(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewSource(5))
	var units [][]float32
	for i := 0; i < 40; i++ {
		u := make([]float32, 32)
		scale := math.Ldexp(1, rng.Intn(60)-30)
		for k := range u {
			u[k] = float32(rng.NormFloat64() * scale)
		}
		units = append(units, u)
	}
	edge := func(f func(u []float32)) {
		u := make([]float32, 32)
		for k := range u {
			u[k] = float32(rng.NormFloat64())
		}
		f(u)
		units = append(units, u)
	}
	edge(func(u []float32) { clear(u) })
	edge(func(u []float32) {
		for k := range u {
			u[k] = math.Float32frombits(uint32(rng.Intn(1 << 23)))
		}
	})
	edge(func(u []float32) { u[3] = math.MaxFloat32; u[4] = -math.MaxFloat32 / 3 })
	edge(func(u []float32) { u[7] = float32(math.Inf(-1)) })
	edge(func(u []float32) { u[30] = float32(math.NaN()) })
	edge(func(u []float32) { u[0] = 2; u[1] = -(2 - 1.0/(1<<22)) }) // rounds to 2^22
	edge(func(u []float32) { u[9] = 1e-40 })
	x := make([]float32, 0, 32*len(units))
	for _, u := range units {
		x = append(x, u...)
	}
	n := len(units)
	// the order written plainly: the even inputs of each group of 8, then
	// the odd ones
	order := func(p int) int { return p/8*8 + []int{0, 2, 4, 6, 1, 3, 5, 7}[p%8] }
	xd := make([]byte, 128*n)
	sx := make([]float32, 2*n)
	gptqVPrepZ(&xd[0], 128, &x[0], gptqVOrders[4], &sx[0], 8, n, -3)
	for i, u := range units {
		want, s := vnniPrepRef(u, order)
		got := xd[128*i : 128*i+112]
		for b := range got {
			if got[b] != want[b] {
				t.Fatalf("unit %d (%v): byte %d = %#x, want %#x", i, u[:4], b, got[b], want[b])
			}
		}
		if math.Float32bits(sx[2*i+1]) != math.Float32bits(s) || math.Float32bits(sx[2*i]) != math.Float32bits(-3*s) {
			t.Fatalf("unit %d: sums %v, want %v %v", i, sx[2*i:2*i+2], -3*s, s)
		}
		f := float64(*(*float32)(unsafe.Pointer(&got[96])))
		if math.IsNaN(f) || f == 0 {
			continue
		}
		var mx float64
		for _, v := range u {
			mx = max(mx, math.Abs(float64(v)))
		}
		for p := 0; p < 32; p++ {
			X := float64(int8(got[p])) + 256*float64(int8(got[32+p])) + 65536*float64(int8(got[64+p]))
			if math.Abs(X) > 1<<22 {
				t.Fatalf("unit %d: |X| = %g > 2^22", i, X)
			}
			if k := order(p); math.Abs(X*f-float64(u[k])) > mx*math.Ldexp(1, -22) {
				t.Fatalf("unit %d input %d: %g from the digits, x %g", i, k, X*f, u[k])
			}
		}
	}
}

// TestFP4VNNI checks the FP4 weights' e2m1 VNNI kernels (fp4VNNI) against
// the reference (dequantized rows, float64 sums; tolerance 1e-5 of Σ|x·w|,
// as every kernel here: x is rounded to 2^-22 of its unit's largest |x|)
// on the edges the random cases of TestMatMul do not reach: fp16 scales
// from the subnormal to the largest, units of x near ±2^22 steps against
// codes of ±6 everywhere (where Σ(12 + 2v)·X passes 2^31 and only the
// wrapped sum minus 12·ΣX is exact), zeros, and x of very different
// magnitudes from unit to unit; every M up to 9, column ranges with tails.
// It also checks that those weights take the e2m1 kernels.
func TestFP4VNNI(t *testing.T) {
	if !useAVX512 || !useVNNI {
		t.Skip("no AVX512_VNNI, or switched off (QBENCH_AVX2, QBENCH_NOVNNI)")
	}
	rng := rand.New(rand.NewSource(11))
	for _, g := range []int{32, 64, 128} {
		const out, in = 61, 512
		c := &quant.Codes{Format: quant.FP4, Out: out, In: in, Bits: 4, Group: g, Sym: true}
		c.Q = make([]uint8, out*in)
		c.Scales = make([]float32, out*in/g)
		for n := 0; n < out; n++ {
			for k := 0; k < in; k++ {
				q := uint8(rng.Intn(16))
				switch {
				case n%4 == 1:
					q = 7 // +6 everywhere
				case n%4 == 2:
					q = 15 // −6 everywhere
				}
				c.Q[n*in+k] = q
			}
			for b := 0; b < in/g; b++ {
				var h uint16
				switch (n + b) % 5 {
				case 0:
					h = uint16(1 + rng.Intn(0x3ff)) // subnormal
				case 1:
					h = 0x7bff // 65504
				default:
					h = uint16(0x1000 + rng.Intn(0x5000))
				}
				c.Scales[n*(in/g)+b] = dtype.F16ToF32(h)
			}
		}
		w, err := quant.Pack("fp4", c)
		if err != nil {
			t.Fatal(err)
		}
		if !fp4VNNI(w) {
			t.Fatalf("g%d: not on the e2m1 VNNI kernels", g)
		}
		x := randX(rng, 9*in)
		for u := 0; u < 9*in/32; u++ {
			xu := x[32*u : 32*u+32]
			switch u % 6 {
			case 0:
				for k := range xu {
					xu[k] = 1.9999999 // X = 2^22 − 2 each
				}
			case 1:
				for k := range xu {
					xu[k] = -1.9999999
				}
			case 2:
				clear(xu)
			case 3:
				for k := range xu {
					xu[k] *= 1e-30
				}
			case 4:
				for k := range xu {
					xu[k] *= 1e20
				}
			}
		}
		for M := 1; M <= 9; M++ {
			for _, r := range [][2]int{{0, out}, {5, 58}, {16, 24}} {
				checkMatMul(t, w, x, M, r[0], r[1], fmt.Sprintf("fp4 g%d edges", g))
			}
		}
	}
}

// TestMXFP4VNNI checks MXFP4 weights on the e2m1 VNNI kernels (scales
// from 2^-24, an fp16 subnormal, to 2^15) against the reference, and that
// a weight with one scale fp16 cannot hold (2^16) stays on the row-major
// kernels and is still right; e8m0ToF16 against dtype for every byte.
func TestMXFP4VNNI(t *testing.T) {
	for e := 0; e < 256; e++ {
		h, ok := e8m0ToF16(uint8(e))
		want := dtype.E8M0ToF32(uint8(e))
		if fits := want >= 0x1p-24 && want <= 0x1p15; ok != fits || ok && dtype.F16ToF32(h) != want {
			t.Fatalf("e8m0ToF16(%d) = %#x, %v; the scale is %g", e, h, ok, want)
		}
	}
	if !useAVX512 || !useVNNI {
		t.Skip("no AVX512_VNNI, or switched off (QBENCH_AVX2, QBENCH_NOVNNI)")
	}
	rng := rand.New(rand.NewSource(12))
	for _, top := range []int{15, 16} {
		const out, in = 45, 384
		c := &quant.Codes{Format: quant.MXFP4, Out: out, In: in, Bits: 4, Group: 32, Sym: true}
		c.Q = make([]uint8, out*in)
		for i := range c.Q {
			c.Q[i] = uint8(rng.Intn(16))
		}
		c.Scales = make([]float32, out*in/32)
		for i := range c.Scales {
			c.Scales[i] = float32(math.Ldexp(1, -24+rng.Intn(40)))
		}
		c.Scales[7] = float32(math.Ldexp(1, top))
		w, err := quant.Pack("mxfp4", c)
		if err != nil {
			t.Fatal(err)
		}
		if got := fp4VNNI(w); got != (top == 15) {
			t.Fatalf("largest scale 2^%d: fp4VNNI = %v", top, got)
		}
		x := randX(rng, 6*in)
		for M := 1; M <= 6; M++ {
			checkMatMul(t, w, x, M, 0, out, fmt.Sprintf("mxfp4 2^%d", top))
			checkMatMul(t, w, x, M, 3, 29, fmt.Sprintf("mxfp4 2^%d", top))
		}
	}
}

// TestVNNINonFinite checks that the VNNI kernels give NaN, not garbage,
// for the columns of a product whose x has an Inf or a NaN.
func TestVNNINonFinite(t *testing.T) {
	if !useAVX512 || !useVNNI {
		t.Skip("no AVX512_VNNI, or switched off (QBENCH_AVX2, QBENCH_NOVNNI)")
	}
	rng := rand.New(rand.NewSource(6))
	w := randomWeight(t, rng, quant.GPTQ, 64, 256, 4, 32, 1, true, false, false)
	for _, bad := range []float32{float32(math.Inf(1)), float32(math.NaN())} {
		x := randX(rng, 256)
		x[77] = bad
		dst := make([]float32, 64)
		MatMul(dst, 64, x, 1, w, 0, 64)
		for n, v := range dst {
			if !math.IsNaN(float64(v)) {
				t.Fatalf("x[77] = %v: column %d = %v, want NaN", bad, n, v)
			}
		}
	}
}

// BenchmarkVNNIAB alternates the VNNI and the float 4-bit kernels in one
// process on the Llama-3.2-1B shapes (2 goroutines, weights rotated
// through ≥ 512 MB of copies): each iteration runs every shape once with
// each, and the medians over iterations are reported as GB/s of weight
// bytes and their ratio (vnni/float). Alternating in one process is what
// makes the ratio reliable on a VM whose bandwidth moves from minute to
// minute. QBENCH_FORMATS=int4g32,int4g128 and QBENCH_M=1,2,4 choose.
//
//	go test -run '^$' -bench VNNIAB -benchtime 25x ./backend/cpu/qkernels
func BenchmarkVNNIAB(b *testing.B) {
	if !hasVNNI {
		b.Skip("no AVX512_VNNI")
	}
	p := newPool2()
	defer p.close()
	rng := rand.New(rand.NewSource(1))
	shapes := [][2]int{{2048, 8192}, {8192, 2048}, {2048, 2048}}
	for _, f := range [][2]int{{4, 32}, {4, 128}} {
		bits, g := f[0], f[1]
		if !selected("QBENCH_FORMATS", fmt.Sprintf("int%dg%d", bits, g)) {
			continue
		}
		var wss [][]*quant.Weight
		for _, s := range shapes {
			wss = append(wss, replicate(gptqBench(bits, g, true)(rng, s[1], s[0])))
		}
		for _, M := range []int{1, 2, 4} {
			if !selected("QBENCH_M", fmt.Sprint(M)) {
				continue
			}
			b.Run(fmt.Sprintf("int%dg%d/M%d", bits, g, M), func(b *testing.B) {
				defer func(v bool) { useVNNI = v }(useVNNI)
				res := map[bool][]float64{}
				for b.Loop() {
					for _, v := range []bool{true, false} {
						useVNNI = v
						var bytes float64
						t0 := time.Now()
						for si, s := range shapes {
							K, N := s[0], s[1]
							x := randX(rng, M*K)
							dst := make([]float32, M*N)
							for _, w := range wss[si] {
								p.run(func(gi int) { MatMul(dst, N, x, M, w, gi*N/2, (gi+1)*N/2) })
								bytes += float64(weightBytes(w))
							}
						}
						res[v] = append(res[v], bytes/time.Since(t0).Seconds()/1e9)
					}
				}
				med := func(r []float64) float64 { sort.Float64s(r); return r[len(r)/2] }
				v, f := med(res[true]), med(res[false])
				b.ReportMetric(v, "vnni_GB/s")
				b.ReportMetric(f, "float_GB/s")
				b.ReportMetric(v/f, "ratio")
			})
		}
		wss = nil
		runtime.GC()
	}
}
