//go:build linux && !nocuda

package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

var (
	sharedOnce sync.Once
	shared     *Backend
	sharedErr  error
)

// gpu returns the backend the tests share, or skips the test with a
// one-line reason when this machine has no usable CUDA.
func gpu(t testing.TB) *Backend {
	t.Helper()
	sharedOnce.Do(func() {
		t0 := time.Now()
		shared, sharedErr = New(0)
		if sharedErr == nil {
			fmt.Fprintf(os.Stderr, "cuda tests on %s (ready in %.1f s, kernels from the disk cache: %v; warpgroup MMA kernels: %v, on: %v)\n",
				shared.Describe(), time.Since(t0).Seconds(), shared.fromCache, shared.wgmmaReady, shared.wgmma)
			if shared.wgmmaErr != nil {
				fmt.Fprintf(os.Stderr, "sm_90a compilation failed: %v\n", shared.wgmmaErr)
			}
		}
	})
	if sharedErr != nil {
		if errors.Is(sharedErr, ErrUnavailable) {
			t.Skipf("skipping: %v", sharedErr)
		}
		t.Fatalf("cuda.New: %v", sharedErr)
	}
	return shared
}

// newGPU opens a backend of the test's own, closed at the end of the test.
func newGPU(t *testing.T) *Backend {
	t.Helper()
	gpu(t) // skip without CUDA
	b, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// mustSync fails the test on a pending backend error.
func mustSync(t testing.TB, b backend.Backend) {
	t.Helper()
	if err := b.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// testdata returns the repository's testdata folder (the test may run
// from the package folder or, as a copied binary, from anywhere below the
// repository root).
func testdata(t testing.TB) string {
	dir, _ := os.Getwd()
	for range 6 {
		p := filepath.Join(dir, "testdata", "models")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return filepath.Join(dir, "testdata")
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("testdata/models not found above the working directory")
	return ""
}

// pair holds the same tensor on the GPU and on the CPU reference.
type pair struct {
	g, c backend.Tensor
	rows int
	cols int
}

// tensors makes a [rows, cols] tensor on both backends holding vals (or
// poison, NaN, when vals is nil).
func tensors(t testing.TB, g *Backend, c *cpu.Backend, rows, cols int, vals []float32) pair {
	if vals == nil {
		vals = poison(rows * cols)
	}
	p := pair{g: g.NewTensor(rows, cols), c: c.NewTensor(rows, cols), rows: rows, cols: cols}
	g.Write(p.g, vals)
	c.Write(p.c, vals)
	return p
}

// read returns both sides' values.
func (p pair) read(t testing.TB, g *Backend, c *cpu.Backend) (got, want []float32) {
	t.Helper()
	got, want = make([]float32, p.rows*p.cols), make([]float32, p.rows*p.cols)
	if err := g.Read(got, p.g); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if err := c.Read(want, p.c); err != nil {
		t.Fatal(err)
	}
	return got, want
}

func poison(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

func randn(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// compare checks |got − want| ≤ rel·|want| + abs element by element and
// reports the first few violations.
func compare(t testing.TB, what string, got, want []float32, rel, abs float64) {
	t.Helper()
	bad := 0
	worst := 0.0
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		d := math.Abs(g - w)
		if !(d <= rel*math.Abs(w)+abs) { // NaN fails
			if bad < 5 {
				t.Errorf("%s: element %d: got %g, want %g (|Δ| %.3g > %.3g)", what, i, g, w, d, rel*math.Abs(w)+abs)
			}
			bad++
		}
		if d > worst && !math.IsNaN(d) {
			worst = d
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements out of tolerance (worst |Δ| %.3g)", what, bad, len(want), worst)
	}
}

// sub returns a − b elementwise.
func sub(a, b []float32) []float32 {
	d := make([]float32, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, math.Abs(float64(x)))
	}
	return m
}

// weight cases: random weights of every format, built directly from random
// bytes (every bit pattern the format allows, NaN codes avoided) so that
// packing corner cases (3-bit values straddling words, act-order g_idx,
// v1 zero offsets) are all exercised.

type weightCase struct {
	name string
	make func(rng *rand.Rand, n, k int) *quant.Weight
	k    []int // input sizes the format allows in these tests
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func denseWeight(dt dtype.DType) func(rng *rand.Rand, n, k int) *quant.Weight {
	return func(rng *rand.Rand, n, k int) *quant.Weight {
		vals := randn(rng, n*k, 0.2)
		var data []byte
		switch dt {
		case dtype.F32:
			data = f32Bytes(vals)
		case dtype.F16, dtype.BF16:
			data = make([]byte, 2*len(vals))
			for i, x := range vals {
				h := dtype.F32ToF16(x)
				if dt == dtype.BF16 {
					h = dtype.F32ToBF16(x)
				}
				binary.LittleEndian.PutUint16(data[2*i:], h)
			}
		}
		return &quant.Weight{Name: "dense-" + dt.String(), Format: quant.Dense, DType: dt, Out: n, In: k, Data: data}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

func f16Scales(rng *rand.Rand, n int, lo, hi float64) []byte {
	b := make([]byte, 2*n)
	for i := range n {
		binary.LittleEndian.PutUint16(b[2*i:], dtype.F32ToF16(float32(lo+rng.Float64()*(hi-lo))))
	}
	return b
}

// gptqWeight builds a random GPTQ weight: bits, group (0: per-channel),
// asym (stored zero points; otherwise nil zeros, symmetric), act-order
// g_idx, and the v1 zero offset.
func gptqWeight(bits, group int, asym, actOrder bool, zoff int) func(rng *rand.Rand, n, k int) *quant.Weight {
	return func(rng *rand.Rand, n, k int) *quant.Weight {
		g := group
		if g == 0 {
			g = k
		}
		groups := k / g
		w := &quant.Weight{Name: fmt.Sprintf("gptq-int%d-g%d", bits, g), Format: quant.GPTQ, Out: n, In: k, Bits: bits, Group: g,
			Sym: !asym, ZeroOffset: zoff}
		w.Data = randBytes(rng, 4*(k*bits/32)*n)
		w.Scales = f16Scales(rng, groups*n, 0.002, 0.03)
		if asym {
			w.Zeros = randBytes(rng, 4*groups*((n*bits+31)/32))
		}
		if actOrder {
			w.GIdx = make([]int32, k)
			for i := range w.GIdx {
				w.GIdx[i] = int32(i / g)
			}
			rng.Shuffle(k, func(a, b int) { w.GIdx[a], w.GIdx[b] = w.GIdx[b], w.GIdx[a] })
		}
		return w
	}
}

func fp8Weight(rng *rand.Rand, n, k int) *quant.Weight {
	data := randBytes(rng, n*k)
	for i, v := range data {
		if v&0x7f == 0x7f { // NaN codes
			data[i] = v - 1
		}
	}
	sc := make([]float32, n)
	for i := range sc {
		sc[i] = float32(0.001 + 0.01*rng.Float64())
	}
	return &quant.Weight{Name: "fp8", Format: quant.FP8, Out: n, In: k, Bits: 8, Group: k, Data: data, Scales: f32Bytes(sc)}
}

func fp4Weight(group int) func(rng *rand.Rand, n, k int) *quant.Weight {
	return func(rng *rand.Rand, n, k int) *quant.Weight {
		return &quant.Weight{Name: fmt.Sprintf("fp4-g%d", group), Format: quant.FP4, Out: n, In: k, Bits: 4, Group: group,
			Data: randBytes(rng, n*k/2), Scales: f16Scales(rng, n*(k/group), 0.01, 0.1)}
	}
}

func mxfp4Weight(rng *rand.Rand, n, k int) *quant.Weight {
	sc := make([]byte, n*(k/32))
	for i := range sc {
		sc[i] = byte(118 + rng.IntN(12))
	}
	return &quant.Weight{Name: "mxfp4", Format: quant.MXFP4, Out: n, In: k, Bits: 4, Group: 32, Data: randBytes(rng, n*k/2), Scales: sc}
}

func nvfp4Weight(rng *rand.Rand, n, k int) *quant.Weight {
	sc := make([]byte, n*(k/16))
	for i := range sc {
		sc[i] = byte(0x20 + rng.IntN(0x40)) // positive normal e4m3 values
	}
	return &quant.Weight{Name: "nvfp4", Format: quant.NVFP4, Out: n, In: k, Bits: 4, Group: 16, Data: randBytes(rng, n*k/2), Scales: sc,
		GlobalScale: 0.0123}
}

// weightCases lists every format with the input sizes it allows.
var weightCases = []weightCase{
	{"f32", denseWeight(dtype.F32), []int{131, 64}},
	{"f16", denseWeight(dtype.F16), []int{131, 64}},
	{"bf16", denseWeight(dtype.BF16), []int{131, 64}},
	{"fp8", fp8Weight, []int{131, 160}},
	{"fp4-g32", fp4Weight(32), []int{160, 256}},
	{"fp4-g10", fp4Weight(10), []int{160}},
	{"mxfp4", mxfp4Weight, []int{160, 256}},
	{"nvfp4", nvfp4Weight, []int{160, 256}},
	{"gptq-int4-g32-sym", gptqWeight(4, 32, false, false, 1), []int{160, 256}},
	{"gptq-int4-g32-asym-v1", gptqWeight(4, 32, true, false, 1), []int{160, 256}},
	{"gptq-int4-g32-asym-v2-actorder", gptqWeight(4, 32, true, true, 0), []int{160, 256}},
	{"gptq-int3-g32-asym", gptqWeight(3, 32, true, false, 1), []int{160, 256}},
	{"gptq-int3-g32-actorder", gptqWeight(3, 32, true, true, 1), []int{160}},
	{"gptq-int2-g32-asym", gptqWeight(2, 32, true, false, 0), []int{160, 256}},
	{"gptq-int8-perchannel", gptqWeight(8, 0, true, false, 1), []int{160, 256}},
	{"gptq-int8-g128-sym-actorder", gptqWeight(8, 128, false, true, 1), []int{256}},
}

// absDot returns Σ_k |x[m,k]·w[n,k]| for every (m, n), in float64, from
// the reference dequantization: the scale of a matmul output's error.
func absDot(w *quant.Weight, x []float32, M int) []float64 {
	N, K := w.Out, w.In
	out := make([]float64, M*N)
	row := make([]float32, K)
	for n := range N {
		w.DequantizeRow(row, n)
		for m := range M {
			var s float64
			for k, v := range row {
				s += math.Abs(float64(v) * float64(x[m*K+k]))
			}
			out[m*N+n] = s
		}
	}
	return out
}

// loadBoth loads w on the GPU backend g and on the CPU backend c.
func loadBoth(t *testing.T, g, c backend.Backend, w *quant.Weight) (gm, cm backend.Matrix) {
	t.Helper()
	gm, err := g.LoadMatrix(w)
	if err != nil {
		t.Fatal(err)
	}
	if cm, err = c.LoadMatrix(w); err != nil {
		t.Fatal(err)
	}
	return gm, cm
}

// gpuMatMul returns x·wᵀ computed by g for the M rows xv, into an output
// poisoned (NaN) before the product.
func gpuMatMul(t *testing.T, g *Backend, w backend.Matrix, xv []float32, M int) []float32 {
	t.Helper()
	x, y := g.NewTensor(M, w.Cols()), g.NewTensor(M, w.Rows())
	g.Write(x, xv)
	g.Write(y, poison(M*w.Rows()))
	g.MatMul(y, x, w)
	got := make([]float32, M*w.Rows())
	if err := g.Read(got, y); err != nil {
		t.Fatal(err)
	}
	return got
}

// testRope is a rotary embedding of half pairs with Llama's frequencies
// (base 10000), cos and sin times scale.
func testRope(half int, scale float32, inter bool) *backend.Rope {
	r := &backend.Rope{InvFreq: make([]float32, half), Scale: scale, Interleaved: inter}
	for i := range r.InvFreq {
		r.InvFreq[i] = float32(math.Pow(10000, -float64(2*i)/float64(2*half)))
	}
	return r
}

// blockTables splits perm (a permutation of the cache's blocks) into nseq
// block tables of per blocks each: scrambled tables for attention tests.
func blockTables(perm []int, nseq, per int) [][]int32 {
	tables := make([][]int32, nseq)
	for s := range tables {
		for i := range per {
			tables[s] = append(tables[s], int32(perm[s*per+i]))
		}
	}
	return tables
}

// stepBatch is one attention step of sequences that each add lens[s] new
// rows (0: the sequence sits the step out) after the done[s] positions
// they hold, which it advances.
func stepBatch(lens []int, tables [][]int32, done []int) backend.Batch {
	var bt backend.Batch
	for s, n := range lens {
		if n == 0 {
			continue
		}
		bt.Seqs = append(bt.Seqs, backend.Seq{Start: len(bt.Tokens), Len: n, Blocks: tables[s]})
		for range n {
			bt.Tokens = append(bt.Tokens, 0)
			bt.Pos = append(bt.Pos, int32(done[s]))
			done[s]++
		}
	}
	return bt
}

// decodeAttentionSpeed times one decode row's attention over a new cache
// of spec whose every layer holds n − 1 prefilled positions of random keys
// (and values, unless the cache keeps them in the keys) in scrambled
// blocks: the layers in turn, four rounds, each launch after the one
// before, and the sequence three times (eager, captured, replayed: the
// replay's time). It returns µs a launch.
func decodeAttentionSpeed(t *testing.T, g *Backend, spec backend.KVSpec, heads, n int, scale float32, rope *backend.Rope, rng *rand.Rand) float64 {
	t.Helper()
	cache, err := g.NewKVCache(spec)
	if err != nil {
		t.Fatal(err)
	}
	blocks := blockTables(rng.Perm(spec.Blocks), 1, spec.Blocks)[0]
	kw, vw := spec.KVHeads*spec.KeyDim, spec.KVHeads*spec.ValueDim
	values := func(rows int) backend.Tensor { // (nil: values in the keys)
		if spec.ValueInKey {
			return nil
		}
		return g.NewTensor(rows, vw)
	}
	pre := backend.Batch{Seqs: []backend.Seq{{Start: 0, Len: n - 1, Blocks: blocks}}}
	for i := range n - 1 {
		pre.Tokens = append(pre.Tokens, 0)
		pre.Pos = append(pre.Pos, int32(i))
	}
	q, k, v := g.NewTensor(n-1, heads*spec.KeyDim), g.NewTensor(n-1, kw), values(n-1)
	out := g.NewTensor(n-1, heads*spec.ValueDim)
	g.Write(q, randn(rng, (n-1)*heads*spec.KeyDim, 1))
	for l := range spec.Layers {
		g.Write(k, randn(rng, (n-1)*kw, 1))
		if v != nil {
			g.Write(v, randn(rng, (n-1)*vw, 1))
		}
		g.Attention(out, q, k, v, cache, l, &pre, scale, rope)
	}
	mustSync(t, g)
	dec := backend.Batch{Tokens: []int32{0}, Pos: []int32{int32(n - 1)}, Seqs: []backend.Seq{{Start: 0, Len: 1, Blocks: blocks}}}
	q1, k1, v1, o1 := g.NewTensor(1, heads*spec.KeyDim), g.NewTensor(1, kw), values(1), g.NewTensor(1, heads*spec.ValueDim)
	g.Write(q1, randn(rng, heads*spec.KeyDim, 1))
	g.Write(k1, randn(rng, kw, 1))
	if v1 != nil {
		g.Write(v1, randn(rng, vw, 1))
	}
	start, stop := g.newEvent(), g.newEvent()
	defer start.destroy()
	defer stop.destroy()
	var us float64
	for range 3 {
		start.record()
		for l := range 4 * spec.Layers {
			g.Attention(o1, q1, k1, v1, cache, l%spec.Layers, &dec, scale, rope)
		}
		stop.record()
		us = float64(stop.since(start).Nanoseconds()) / 1e3 / float64(4*spec.Layers)
	}
	mustSync(t, g)
	return us
}
