package qkernels

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// randomWeight builds a quantized weight with random codes, scales and zero
// points (never all zero) of the given format.
func randomWeight(t testing.TB, rng *rand.Rand, f quant.Format, out, in, bits, group, zeroOffset int, sym, act, nilZeros bool) *quant.Weight {
	c := &quant.Codes{Format: f, Out: out, In: in, Bits: bits, Group: group, ZeroOffset: zeroOffset, Sym: sym || f != quant.GPTQ}
	c.Q = make([]uint8, out*in)
	switch f {
	case quant.GPTQ:
		groups := in / group
		for i := range c.Q {
			c.Q[i] = uint8(rng.Intn(1 << uint(bits)))
		}
		c.Scales = make([]float32, groups*out)
		c.Zeros = make([]int32, groups*out)
		for i := range c.Scales {
			c.Scales[i] = dtype.F16ToF32(dtype.F32ToF16(float32(0.001 + rng.ExpFloat64()*0.01)))
			if sym {
				c.Zeros[i] = 1 << uint(bits-1)
			} else {
				c.Zeros[i] = int32(rng.Intn(1<<uint(bits))) + int32(zeroOffset)
			}
		}
		if act {
			c.GIdx = make([]int32, in)
			for i, p := range rng.Perm(in) {
				c.GIdx[p] = int32(i / group)
			}
		}
	case quant.FP8:
		c.Bits, c.Group = 8, in
		for i := range c.Q {
			b := uint8(rng.Intn(256))
			if b&0x7f == 0x7f {
				b ^= 1
			}
			c.Q[i] = b
		}
		c.Scales = make([]float32, out)
		for i := range c.Scales {
			c.Scales[i] = float32(0.001 + rng.ExpFloat64()*0.01)
		}
	default:
		c.Bits = 4
		switch f {
		case quant.MXFP4:
			c.Group = 32
		case quant.NVFP4:
			c.Group = 16
			c.GlobalScale = float32(0.001 + rng.ExpFloat64()*1e-3)
		}
		for i := range c.Q {
			c.Q[i] = uint8(rng.Intn(16))
		}
		nb := in / c.Group
		c.Scales = make([]float32, out*nb)
		for i := range c.Scales {
			switch f {
			case quant.FP4:
				c.Scales[i] = dtype.F16ToF32(dtype.F32ToF16(float32(0.001 + rng.ExpFloat64()*0.01)))
			case quant.MXFP4:
				c.Scales[i] = dtype.E8M0ToF32(uint8(110 + rng.Intn(30)))
			case quant.NVFP4:
				c.Scales[i] = dtype.E4M3ToF32(uint8(1 + rng.Intn(0x7e)))
			}
		}
	}
	w, err := quant.Pack("w", c)
	if err != nil {
		t.Fatal(err)
	}
	if nilZeros {
		w.Zeros = nil
	}
	return w
}

type kcase struct {
	f                  quant.Format
	bits, group, off   int
	sym, act, nilZeros bool
}

// groupFor returns the group size of case c's weight with in inputs (the
// whole row when the case has none, and always for FP8), and whether the
// format can hold that many inputs.
func (c kcase) groupFor(in int) (int, bool) {
	group := c.group
	if group == 0 || c.f == quant.FP8 {
		group = in
	}
	return group, in%group == 0 && (c.f != quant.NVFP4 || in%16 == 0) && (c.f != quant.MXFP4 || in%32 == 0)
}

func (c kcase) String() string {
	return fmt.Sprintf("%v/b%d/g%d/off%d/sym%v/act%v/nilz%v", c.f, c.bits, c.group, c.off, c.sym, c.act, c.nilZeros)
}

func kernelCases() []kcase {
	var cs []kcase
	for _, bits := range []int{2, 3, 4, 8} {
		for _, g := range []int{32, 64, 128, 0} {
			cs = append(cs,
				kcase{quant.GPTQ, bits, g, 1, false, false, false},
				kcase{quant.GPTQ, bits, g, 0, true, false, false},
				kcase{quant.GPTQ, bits, g, 1, true, true, false},
				kcase{quant.GPTQ, bits, g, 0, false, true, false})
		}
		cs = append(cs, kcase{quant.GPTQ, bits, 32, 0, true, false, true})
	}
	// groups that are not whole units of 32 input rows
	cs = append(cs, kcase{quant.GPTQ, 4, 16, 1, false, false, false}, kcase{quant.GPTQ, 8, 48, 0, false, false, false},
		kcase{quant.GPTQ, 3, 96, 1, false, false, false})
	return append(cs, kcase{f: quant.FP8}, kcase{f: quant.FP4, group: 32}, kcase{f: quant.FP4, group: 128},
		kcase{f: quant.FP4, group: 64}, kcase{f: quant.FP4, group: 16}, kcase{f: quant.MXFP4}, kcase{f: quant.NVFP4})
}

// checkMatMul runs MatMul on [n0, n1) and compares with the reference
// (DequantizeRow + float64 dot). Tolerance: the kernels accumulate in
// float32 (different order than a sequential sum) while the reference is
// float64, so |got − ref| ≤ 1e-5 · Σ_k |x_k·w_k|. dst is poisoned with NaN
// and every element outside [m, n0:n1) must stay NaN.
func checkMatMul(t *testing.T, w *quant.Weight, x []float32, M, n0, n1 int, name string) {
	t.Helper()
	ldd := w.Out + 3
	dst := make([]float32, (M-1)*ldd+w.Out+5)
	nan := float32(math.NaN())
	for i := range dst {
		dst[i] = nan
	}
	MatMul(dst, ldd, x, M, w, n0, n1)
	row := make([]float32, w.In)
	for i := range dst {
		m, n := i/ldd, i%ldd
		inside := m < M && n >= n0 && n < n1
		if !inside {
			if !math.IsNaN(float64(dst[i])) {
				t.Fatalf("%s M=%d [%d,%d): wrote dst[%d] (m=%d n=%d) outside the range", name, M, n0, n1, i, m, n)
			}
		}
	}
	for n := n0; n < n1; n++ {
		w.DequantizeRow(row, n)
		for m := 0; m < M; m++ {
			var ref, mag float64
			for k, v := range row {
				p := float64(v) * float64(x[m*w.In+k])
				ref += p
				mag += math.Abs(p)
			}
			got := float64(dst[m*ldd+n])
			if d := math.Abs(got - ref); !(d <= 1e-5*mag) {
				t.Fatalf("%s M=%d [%d,%d) m=%d n=%d: got %g want %g (|Δ| = %g > 1e-5·%g)", name, M, n0, n1, m, n, got, ref, d, mag)
			}
		}
	}
}

func randX(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if x[i] == 0 {
			x[i] = 1
		}
	}
	return x
}

func testKernels(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, c := range kernelCases() {
		for _, in := range raceTrim([]int{96, 160, 256, 4160}) {
			group, ok := c.groupFor(in)
			if !ok {
				continue
			}
			out := 37
			if in == 4160 {
				out = 21
			}
			w := randomWeight(t, rng, c.f, out, in, c.bits, group, c.off, c.sym, c.act, c.nilZeros)
			x := randX(rng, 16*in)
			for _, M := range []int{1, 2, 3, 5, 16} {
				for _, r := range [][2]int{{0, out}, {3, out - 1}, {8, min(32, out)}, {5, 6}} {
					checkMatMul(t, w, x, M, r[0], r[1], c.String()+fmt.Sprintf("/in%d", in))
				}
			}
		}
	}
	// model-sized inputs at batch sizes that leave a one-row pass after the
	// wide ones (9, 17): K tiles and blocks with tails and a short last one
	for _, c := range kernelCases() {
		if c.bits == 2 || (c.f == quant.GPTQ && c.group != 32 && c.group != 128) {
			continue // the same code paths as the cases kept
		}
		for _, in := range raceTrim([]int{2880, 9728}) {
			group, ok := c.groupFor(in)
			if !ok {
				continue
			}
			const out = 19
			w := randomWeight(t, rng, c.f, out, in, c.bits, group, c.off, c.sym, c.act, c.nilZeros)
			x := randX(rng, 17*in)
			for _, M := range []int{9, 17} {
				checkMatMul(t, w, x, M, 2, out, c.String()+fmt.Sprintf("/in%d", in))
			}
		}
	}
	// a wider weight so the wide column blocks of the assembly run
	for _, c := range kernelCases() {
		in := 256
		group := c.group
		if group == 0 || c.f == quant.FP8 || (c.f == quant.FP4 && group == 16) {
			group = in
			if c.f == quant.FP4 {
				group = 16
			}
		}
		if in%group != 0 {
			group = 16
		}
		out := 403
		w := randomWeight(t, rng, c.f, out, in, c.bits, group, c.off, c.sym, c.act, c.nilZeros)
		x := randX(rng, 64*in)
		for _, M := range raceTrim(wideMs) {
			checkMatMul(t, w, x, M, 1, out, c.String()+"/wide")
			checkMatMul(t, w, x, M, 0, 200, c.String()+"/wide")
		}
	}
}

// raceTrim keeps the first half of a list of sizes (the smaller ones)
// under the race detector, which runs the Go code here (the references,
// the portable kernels) 10–20× slower: the same code paths on fewer and
// smaller sizes keep `go test -race` of the package well within its
// default timeout (over 10 minutes with all of them; 8.5 minutes without
// the largest of each list on dev-cpu). Without -race it returns v.
func raceTrim(v []int) []int {
	if raceEnabled {
		return v[:(len(v)+1)/2]
	}
	return v
}

// wideMs are the row counts of the wide test: every kernel row blocking
// (1–4, 6, 8 and their combinations) and a prefill-sized batch.
var wideMs = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 64}

// TestMatMulSmallK covers GPTQ inputs that are not a multiple of 32.
func TestMatMulSmallK(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	for _, simd := range []bool{true, false} {
		old := useSIMD
		useSIMD = useSIMD && simd
		for _, c := range []kcase{{quant.GPTQ, 4, 8, 1, false, false, false}, {quant.GPTQ, 4, 40, 0, false, true, false},
			{quant.GPTQ, 8, 20, 1, false, false, false}, {quant.GPTQ, 8, 4, 1, true, true, false}} {
			w := randomWeight(t, rng, c.f, 45, 40, c.bits, c.group, c.off, c.sym, c.act, c.nilZeros)
			x := randX(rng, 16*40)
			for _, M := range []int{1, 2, 3, 5, 16} {
				checkMatMul(t, w, x, M, 0, 45, c.String())
				checkMatMul(t, w, x, M, 7, 41, c.String())
			}
		}
		useSIMD = old
	}
}

func TestMatMul(t *testing.T) {
	if !HasSIMD() {
		t.Log("no AVX2/FMA/F16C: testing the portable path only")
	}
	testKernels(t)
}

func TestMatMulPortable(t *testing.T) {
	old := useSIMD
	useSIMD = false
	defer func() { useSIMD = old }()
	testKernels(t)
}

// TestBatchInvariance checks that the kernels compute every output element
// bitwise the same whatever the number of x rows of the call (requests must
// produce the same tokens batched or alone), on the paths that promise it:
// the AVX-512 kernels of GPTQ without act-order and of the row-major
// formats, and the portable code.
func TestBatchInvariance(t *testing.T) {
	saved := useSIMD
	defer func() { useSIMD = saved }()
	for _, simd := range []bool{true, false} {
		if simd && !useAVX512 {
			t.Log("no AVX-512: only the portable code is checked")
			continue
		}
		useSIMD = simd
		rng := rand.New(rand.NewSource(21))
		for _, c := range kernelCases() {
			if (c.act && c.bits == 3) || (c.f == quant.GPTQ && c.group%32 != 0) {
				continue // 3-bit act-order and odd groups: AVX2 list kernels
			}
			for _, in := range raceTrim([]int{256, 4160}) {
				group, ok := c.groupFor(in)
				if !ok {
					continue
				}
				const M, out = 64, 203
				w := randomWeight(t, rng, c.f, out, in, c.bits, group, c.off, c.sym, c.act, c.nilZeros)
				x := randX(rng, M*in)
				all := make([]float32, M*out)
				MatMul(all, out, x, M, w, 3, out)
				for _, mc := range []int{1, 2, 3, 5, 7, 8, 13} {
					m0 := (mc * 7) % (M - mc)
					part := make([]float32, mc*out)
					MatMul(part, out, x[m0*in:(m0+mc)*in], mc, w, 3, out)
					for m := 0; m < mc; m++ {
						for n := 3; n < out; n++ {
							a, b := part[m*out+n], all[(m0+m)*out+n]
							if math.Float32bits(a) != math.Float32bits(b) {
								t.Fatalf("%v in=%d simd=%v: row %d col %d: %g with M=%d, %g with M=%d", c, in, simd, m0+m, n, a, mc, b, M)
							}
						}
					}
				}
			}
		}
	}
}

// TestFPBlocks covers the K blocks of the row-major formats: a last block
// shorter than the others (K = 2944: 23 spans of 128, or 46 chunks of 64
// for FP8, in blocks of 8 + 8 + 7 or 16 + 16 + 14 — the decoded panels'
// layout must follow each block's length), and FP4 groups longer than the
// kernels' units, 192 (a scale every three half spans) and 256 (every two
// spans), whose blocks must each start on a new scale. Against the
// reference, and (AVX-512, portable code) bitwise the same at every M (the
// matrix-vector kernels below 8 rows, the decoded panels from 8).
func TestFPBlocks(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	type fcase struct {
		f         quant.Format
		group, in int
	}
	var cs []fcase
	for _, c := range []fcase{{quant.FP8, 2944, 0}, {quant.FP4, 32, 0}, {quant.FP4, 64, 0}, {quant.FP4, 128, 0}, {quant.MXFP4, 32, 0}, {quant.NVFP4, 16, 0}} {
		c.in = 2944
		cs = append(cs, c)
	}
	for _, g := range []int{192, 256} {
		cs = append(cs, fcase{quant.FP4, g, 768}, fcase{quant.FP4, g, 3072})
	}
	for _, c := range cs {
		const out = 29
		w := randomWeight(t, rng, c.f, out, c.in, 4, c.group, 0, true, false, false)
		x := randX(rng, 16*c.in)
		name := fmt.Sprintf("%v/g%d/in%d", c.f, c.group, c.in)
		for _, M := range []int{1, 2, 5, 9, 16} {
			checkMatMul(t, w, x, M, 0, out, name)
			checkMatMul(t, w, x, M, 3, out-1, name)
		}
		if useSIMD && !useAVX512 {
			continue // the AVX2 kernels do not promise batch invariance
		}
		all := make([]float32, 16*out)
		MatMul(all, out, x, 16, w, 0, out)
		for _, mc := range []int{1, 3, 8} {
			part := make([]float32, mc*out)
			MatMul(part, out, x[2*c.in:(2+mc)*c.in], mc, w, 0, out)
			for i := range part {
				if math.Float32bits(part[i]) != math.Float32bits(all[2*out+i]) {
					t.Fatalf("%s: M=%d element %d: %g, with M=16 %g", name, mc, i, part[i], all[2*out+i])
				}
			}
		}
	}
}
