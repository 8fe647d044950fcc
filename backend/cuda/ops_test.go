//go:build linux && !nocuda

package cuda

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// TestOps checks every op of the backend against backend/cpu on random
// data: fresh inputs for every check, outputs poisoned (NaN) before each
// run, odd shapes. Tolerances are stated per op.
func TestOps(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	t.Run("MatMul", func(t *testing.T) { testMatMul(t, g, c) })
	t.Run("Embed", func(t *testing.T) { testEmbed(t, g, c) })
	t.Run("HeadMatMul", func(t *testing.T) { testHeadMatMul(t, g, c) })
	t.Run("Elementwise", func(t *testing.T) { testElementwise(t, g, c) })
	t.Run("RMSNorm", func(t *testing.T) { testRMSNorm(t, g, c) })
	t.Run("RoPE", func(t *testing.T) { testRoPE(t, g, c) })
	t.Run("Copies", func(t *testing.T) { testCopies(t, g, c) })
	t.Run("Attention", func(t *testing.T) { testAttention(t, g, c) })
	t.Run("MoE", func(t *testing.T) { testMoE(t, g, c) })
}

// testMatMul: y = x·Wᵀ for every format, decode-sized and prefill-sized M
// (both kernel configurations, partial tiles). Tolerance: |gpu − cpu| and
// |gpu − exact| ≤ 1e-5 · Σ_k|x·w| (float32 sums of K products).
func testMatMul(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, wc := range weightCases {
		for _, K := range wc.k {
			for _, N := range []int{37, 130} {
				w := wc.make(rng, N, K)
				if err := w.Validate(); err != nil {
					t.Fatalf("%s: %v", wc.name, err)
				}
				gw, cw := loadBoth(t, g, c, w)
				if gw.Rows() != N || gw.Cols() != K || gw.Bytes() <= 0 {
					t.Errorf("%s: matrix [%d, %d] of %d bytes", wc.name, gw.Rows(), gw.Cols(), gw.Bytes())
				}
				for _, M := range []int{1, 5, 8, 9, 67} {
					name := fmt.Sprintf("%s N%d K%d M%d", wc.name, N, K, M)
					xv := randn(rng, M*K, 1)
					x := tensors(t, g, c, M, K, xv)
					y := tensors(t, g, c, M, N, nil)
					g.MatMul(y.g, x.g, gw)
					c.MatMul(y.c, x.c, cw)
					got, want := y.read(t, g, c)
					scale := absDot(w, xv, M)
					exact := exactMatMul(w, xv, M)
					tol := matmulTol(gw, M)
					checkScaled(t, name+" vs cpu", got, want, scale, tol)
					checkScaled(t, name+" vs exact", got, exact, scale, tol)
				}
			}
		}
	}
	mustSync(t, g)
}

// exactMatMul computes x·Wᵀ in float64 from the reference dequantization.
func exactMatMul(w *quant.Weight, x []float32, M int) []float32 {
	N, K := w.Out, w.In
	out := make([]float32, M*N)
	row := make([]float32, K)
	for n := range N {
		w.DequantizeRow(row, n)
		for m := range M {
			var s float64
			for k, v := range row {
				s += float64(v) * float64(x[m*K+k])
			}
			out[m*N+n] = float32(s)
		}
	}
	return out
}

// checkScaled checks |got − want| ≤ rel·scale element by element.
func checkScaled(t *testing.T, what string, got, want []float32, scale []float64, rel float64) {
	t.Helper()
	bad := 0
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= rel*scale[i]+1e-30) {
			if bad < 3 {
				t.Errorf("%s: element %d: got %g, want %g (|Δ| %.3g, Σ|x·w| %.3g)", what, i, got[i], want[i], d, scale[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements out of tolerance", what, bad, len(want))
	}
}

// testEmbed: rows of every format's table. The values are the exact
// dequantized weights on both sides; tolerance 1e-6 relative (the same
// float32 products, possibly fused differently), plus the packed layout's
// rounding where packing moved the weights (NVFP4: 2^-11).
func testEmbed(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, wc := range weightCases {
		K, N := wc.k[0], 41
		w := wc.make(rng, N, K)
		gw, err := g.LoadMatrix(w)
		if err != nil {
			t.Fatal(err)
		}
		cw, _ := c.LoadMatrix(w)
		tokens := []int32{0, int32(N - 1), 7, 7, int32(rng.IntN(N)), int32(rng.IntN(N)), 3}
		d := tensors(t, g, c, len(tokens), K, nil)
		g.Embed(d.g, gw, tokens)
		c.Embed(d.c, cw, tokens)
		got, want := d.read(t, g, c)
		compare(t, "Embed "+wc.name, got, want, 1e-6+gw.(*matrix).rounding, 0)
	}
	mustSync(t, g)
}

// testHeadMatMul: per-head products on strided column ranges (the MLA
// absorption), with matmul tolerance (1e-5 · Σ|x·w|, here bounded by
// 1e-5 · the largest such sum).
func testHeadMatMul(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, M := range []int{1, 3, 12} {
		heads, xStride, dStride, rows, cols := 5, 24, 19, 17, 20
		var gws, cws []backend.Matrix
		var bound float64
		for range heads {
			w := denseWeight(dtype.BF16)(rng, rows, cols)
			gw, err := g.LoadMatrix(w)
			if err != nil {
				t.Fatal(err)
			}
			cw, _ := c.LoadMatrix(w)
			gws, cws = append(gws, gw), append(cws, cw)
		}
		xv := randn(rng, M*heads*xStride, 1)
		x := tensors(t, g, c, M, heads*xStride, xv)
		dv := randn(rng, M*heads*dStride, 1) // columns outside the heads' ranges must stay
		d := tensors(t, g, c, M, heads*dStride, dv)
		g.HeadMatMul(d.g, x.g, gws, dStride, xStride)
		c.HeadMatMul(d.c, x.c, cws, dStride, xStride)
		got, want := d.read(t, g, c)
		bound = maxAbs(want) * 1e-5 * 4
		compare(t, fmt.Sprintf("HeadMatMul M%d", M), got, want, 0, bound)
	}
	mustSync(t, g)
}

// testElementwise: Add and AddBias (exact), SiLUMul in place and not
// (1e-6 relative + 1e-7·max: e^x within 2 ulp on both sides).
func testElementwise(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, shape := range [][2]int{{1, 1}, {3, 97}, {65, 1031}} {
		M, N := shape[0], shape[1]
		d := tensors(t, g, c, M, N, randn(rng, M*N, 1))
		x := tensors(t, g, c, M, N, randn(rng, M*N, 1))
		g.Add(d.g, x.g)
		c.Add(d.c, x.c)
		got, want := d.read(t, g, c)
		compare(t, "Add", got, want, 0, 0)

		bv := randn(rng, N, 1)
		gb, cb := g.LoadVector(bv), c.LoadVector(bv)
		g.AddBias(d.g, gb)
		c.AddBias(d.c, cb)
		got, want = d.read(t, g, c)
		compare(t, "AddBias", got, want, 0, 0)

		gate := tensors(t, g, c, M, N, randn(rng, M*N, 4))
		up := tensors(t, g, c, M, N, randn(rng, M*N, 1))
		out := tensors(t, g, c, M, N, nil)
		g.SiLUMul(out.g, gate.g, up.g)
		c.SiLUMul(out.c, gate.c, up.c)
		got, want = out.read(t, g, c)
		compare(t, "SiLUMul", got, want, 1e-6, 1e-7*maxAbs(want))
		g.SiLUMul(gate.g, gate.g, up.g) // in place
		c.SiLUMul(gate.c, gate.c, up.c)
		got, want = gate.read(t, g, c)
		compare(t, "SiLUMul in place", got, want, 1e-6, 1e-7*maxAbs(want))
	}
	mustSync(t, g)
}

// testRMSNorm: whole rows and per-head chunks, in place and not, and rows
// longer than one pass of the widest block (6000 > 4·1024). Both
// sides sum squares in float64 and apply (x·r)·w in float32: tolerance
// 1e-6 relative (r may round differently by 1 ulp).
func testRMSNorm(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, cs := range []struct{ M, cols, n int }{{1, 48, 48}, {5, 96, 16}, {33, 1000, 1000}, {4, 576, 64}, {2, 6000, 6000}} {
		wv := randn(rng, cs.n, 1)
		gw, cw := g.LoadVector(wv), c.LoadVector(wv)
		xv := randn(rng, cs.M*cs.cols, 3)
		x := tensors(t, g, c, cs.M, cs.cols, xv)
		d := tensors(t, g, c, cs.M, cs.cols, nil)
		g.RMSNorm(d.g, x.g, gw, 1e-6)
		c.RMSNorm(d.c, x.c, cw, 1e-6)
		got, want := d.read(t, g, c)
		compare(t, fmt.Sprintf("RMSNorm %+v", cs), got, want, 1e-6, 1e-30)
		g.RMSNorm(x.g, x.g, gw, 1e-5)
		c.RMSNorm(x.c, x.c, cw, 1e-5)
		got, want = x.read(t, g, c)
		compare(t, fmt.Sprintf("RMSNorm in place %+v", cs), got, want, 1e-6, 1e-30)
	}
	mustSync(t, g)
}

// testRoPE: both pair conventions, a rotary part at an offset inside the
// head (partial rotary), Scale ≠ 1, positions that grow the cos/sin table.
// The tables are the CPU's own values; tolerance 1e-6 · max|x|.
func testRoPE(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, inter := range []bool{false, true} {
		for _, scale := range []float32{0, 1.3} {
			half := 6
			r := testRope(half, scale, inter)
			heads, headDim, offset := 3, 20, 4
			for _, maxPos := range []int{50, 700, 5000} {
				M := 9
				pos := make([]int32, M)
				for i := range pos {
					pos[i] = int32(rng.IntN(maxPos))
				}
				xv := randn(rng, M*heads*headDim, 1)
				x := tensors(t, g, c, M, heads*headDim, xv)
				g.RoPE(x.g, heads, headDim, offset, r, pos)
				c.RoPE(x.c, heads, headDim, offset, r, pos)
				got, want := x.read(t, g, c)
				compare(t, fmt.Sprintf("RoPE interleaved=%v scale=%g maxPos=%d", inter, scale, maxPos), got, want, 0, 1e-6*maxAbs(want))
			}
		}
	}
	mustSync(t, g)
}

// testCopies: CopyRows and CopyCols (exact).
func testCopies(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(13, 14))
	src := tensors(t, g, c, 11, 37, randn(rng, 11*37, 1))
	dst := tensors(t, g, c, 6, 37, randn(rng, 6*37, 1))
	rows := []int32{10, 0, 3, 3, 7}
	g.CopyRows(dst.g, src.g, rows)
	c.CopyRows(dst.c, src.c, rows)
	got, want := dst.read(t, g, c)
	compare(t, "CopyRows", got, want, 0, 0)

	s2 := tensors(t, g, c, 5, 3*20, randn(rng, 5*60, 1))
	d2 := tensors(t, g, c, 5, 3*24, randn(rng, 5*72, 1))
	g.CopyCols(d2.g, s2.g, 3, 8, 24, 16, 20, 12)
	c.CopyCols(d2.c, s2.c, 3, 8, 24, 16, 20, 12)
	got, want = d2.read(t, g, c)
	compare(t, "CopyCols", got, want, 0, 0)
	g.CopyCols(d2.g, s2.g, 1, 13, 0, 2, 0, 40)
	c.CopyCols(d2.c, s2.c, 1, 13, 0, 2, 0, 40)
	got, want = d2.read(t, g, c)
	compare(t, "CopyCols one head", got, want, 0, 0)
	mustSync(t, g)
}

// testAttention: several sequences per batch (prompt chunks, then decode
// rows), scrambled block tables, MHA, GQA, MQA and the latent
// (values-in-keys) cache, over several steps so that later steps read
// what earlier ones stored. Tolerance 2e-5·(1 + |cpu|), the CPU test's
// bound against the exact attention.
// testAttention runs two prefill steps (sequences of several new rows)
// and two decode steps (one new row each: the flash-decoding kernel for
// heads of 64 and 128, which then stores the keys and values and rotates
// q and the new keys itself), with and without a rotary embedding, and
// compares every output with the CPU's; each step also reads the keys the
// steps before it stored. Every case runs over a float32, a binary16 and
// a bfloat16 cache: both backends round what they store the same way
// (to nearest-even) and attend to every position as stored, so the
// tolerance stays the float32 one.
func testAttention(t *testing.T, g *Backend, c *cpu.Backend) {
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		testAttentionOf(t, g, c, dt)
	}
}

// TestSplitAttentionLong checks decode attention at long contexts against
// the CPU's: the Llama-3-8B head shape (32 heads, 8 KV heads of 128) with
// rotary embeddings, four sequences prefilled to 1,500, 700, 3 and 1
// positions, then decode steps of all of them and of some (attn_split's
// splits then hold dozens of positions a warp, and span many blocks of 2
// positions); blocks of 2 and 16 positions. Float32 and bfloat16 caches;
// tolerance as testAttention.
func TestSplitAttentionLong(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	const heads, kvHeads, d = 32, 8, 128
	rope := testRope(d/2, 1, false)
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16} {
		for _, bs := range []int{2, 16} {
			rng := rand.New(rand.NewPCG(71, uint64(bs)))
			const nseq = 4
			per := 1600/bs + 1
			spec := backend.KVSpec{Layers: 1, KVHeads: kvHeads, KeyDim: d, ValueDim: d, BlockSize: bs, Blocks: nseq * per, DType: dt}
			gc, err := g.NewKVCache(spec)
			if err != nil {
				t.Fatal(err)
			}
			cc, _ := c.NewKVCache(spec)
			tables := blockTables(rng.Perm(spec.Blocks), nseq, per)
			done := make([]int, nseq)
			step := func(lens []int) {
				bt := stepBatch(lens, tables, done)
				M := len(bt.Tokens)
				q := tensors(t, g, c, M, heads*d, randn(rng, M*heads*d, 1))
				k := tensors(t, g, c, M, kvHeads*d, randn(rng, M*kvHeads*d, 1))
				v := tensors(t, g, c, M, kvHeads*d, randn(rng, M*kvHeads*d, 1))
				out := tensors(t, g, c, M, heads*d, nil)
				scale := float32(1 / math.Sqrt(d))
				g.Attention(out.g, q.g, k.g, v.g, gc, 0, &bt, scale, rope)
				c.Attention(out.c, q.c, k.c, v.c, cc, 0, &bt, scale, rope)
				got, want := out.read(t, g, c)
				compare(t, fmt.Sprintf("attention %v, blocks of %d, rows %v (context %v)", dt, bs, lens, done), got, want, 2e-5, 2e-5)
			}
			step([]int{1500, 700, 3, 1})
			step([]int{1, 1, 1, 1})
			step([]int{1, 0, 1, 0})
			step([]int{1, 1, 1, 1})
			// one decode row (the wide form, at G = 4) at ~1,500 and ~700
			// positions
			step([]int{1, 0, 0, 0})
			step([]int{0, 1, 0, 0})
			mustSync(t, g)
		}
	}
}

// TestSplitAttentionSpeed times one decode row's attention alone, the
// Llama-3-8B head shape (bfloat16 cache, rotary embeddings) at 512 and
// 2,048 positions, 16 layers rotated, each launch after the one before
// (programmatic dependent launch, a CUDA graph: eager, captured, then
// replayed — the time printed). A measurement, as TestMLADecodeSpeed: it
// prints, and fails only on errors.
func TestSplitAttentionSpeed(t *testing.T) {
	g := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	const heads, kvHeads, d, bs, layers = 32, 8, 128, 64, 16
	rope := testRope(d/2, 1, false)
	rng := rand.New(rand.NewPCG(73, 74))
	for _, n := range []int{512, 2048} {
		spec := backend.KVSpec{Layers: layers, KVHeads: kvHeads, KeyDim: d, ValueDim: d, BlockSize: bs, Blocks: n / bs, DType: dtype.BF16}
		fmt.Printf("attention %d positions: %.2f µs\n", n, decodeAttentionSpeed(t, g, spec, heads, n, 0.09, rope, rng))
	}
}

func testAttentionOf(t *testing.T, g *Backend, c *cpu.Backend, dt dtype.DType) {
	rng := rand.New(rand.NewPCG(15, 16))
	// rope: 0 none, 1 rotate-half over the whole head, 2 interleaved, 3
	// rotate-half over a quarter of the head (partial rotary)
	cases := []struct {
		heads, kvHeads, dk, dv, bs int
		latent                     bool
		rope                       int
		seqs                       int // sequences a batch (0: 3); one row decodes with more splits
	}{
		{4, 2, 32, 32, 16, false, 0, 0},
		{6, 1, 8, 8, 4, false, 1, 0},
		{8, 8, 24, 24, 3, false, 2, 0},
		{10, 1, 40, 32, 16, true, 0, 0},
		{9, 3, 16, 16, 5, false, 0, 0},
		{4, 1, 576, 512, 16, true, 0, 0}, // GLM-4.7-Flash's latent head
		{2, 2, 128, 128, 16, false, 0, 0},
		// the flash-decoding kernel: G = 4 (Llama-3), 3 (rounded up to 4), 8
		{32, 8, 128, 128, 16, false, 1, 0},
		{12, 4, 64, 64, 16, false, 2, 0},
		{16, 2, 128, 128, 7, false, 3, 0},
		{32, 8, 128, 128, 16, false, 0, 0},
		{32, 8, 128, 128, 16, false, 1, 1},
		{12, 4, 64, 64, 5, false, 0, 1},
	}
	for _, cs := range cases {
		var rope *backend.Rope
		if cs.rope > 0 {
			half := cs.dk / 2
			if cs.rope == 3 {
				half = cs.dk / 8
			}
			rope = testRope(half, 1, cs.rope == 2)
		}
		spec := backend.KVSpec{Layers: 2, KVHeads: cs.kvHeads, KeyDim: cs.dk, ValueDim: cs.dv, ValueInKey: cs.latent, BlockSize: cs.bs, Blocks: 200, DType: dt}
		gc, err := g.NewKVCache(spec)
		if err != nil {
			t.Fatal(err)
		}
		cc, _ := c.NewKVCache(spec)
		perm := rng.Perm(spec.Blocks)
		nseq := cmp.Or(cs.seqs, 3)
		tables := blockTables(perm, nseq, 60/nseq)
		done := make([]int, nseq)
		for step := range 4 {
			var bt backend.Batch
			var kv, vv []float32
			for s := range nseq {
				n := 1
				if step < 2 {
					n = 1 + rng.IntN(3*cs.bs)
				}
				bt.Seqs = append(bt.Seqs, backend.Seq{Start: len(bt.Tokens), Len: n, Blocks: tables[s]})
				for range n {
					k := randn(rng, cs.kvHeads*cs.dk, 1)
					kv = append(kv, k...)
					if !cs.latent {
						vv = append(vv, randn(rng, cs.kvHeads*cs.dv, 1)...)
					}
					bt.Tokens = append(bt.Tokens, 0)
					bt.Pos = append(bt.Pos, int32(done[s]))
					done[s]++
				}
			}
			M := len(bt.Tokens)
			q := tensors(t, g, c, M, cs.heads*cs.dk, randn(rng, M*cs.heads*cs.dk, 1))
			k := tensors(t, g, c, M, cs.kvHeads*cs.dk, kv)
			out := tensors(t, g, c, M, cs.heads*cs.dv, nil)
			var gv, cv backend.Tensor
			if !cs.latent {
				v := tensors(t, g, c, M, cs.kvHeads*cs.dv, vv)
				gv, cv = v.g, v.c
			}
			scale := float32(1 / math.Sqrt(float64(cs.dk)))
			g.Attention(out.g, q.g, k.g, gv, gc, 1, &bt, scale, rope)
			c.Attention(out.c, q.c, k.c, cv, cc, 1, &bt, scale, rope)
			got, want := out.read(t, g, c)
			compare(t, fmt.Sprintf("Attention %v %+v step %d", dt, cs, step), got, want, 2e-5, 2e-5)
		}
		if gc.Bytes() != cc.Bytes() {
			t.Errorf("KV cache of %d bytes, CPU %d", gc.Bytes(), cc.Bytes())
		}
	}
	mustSync(t, g)
}

// testMoE: Route (softmax with and without normalisation; sigmoid with a
// selection bias, scaling and group-limited routing, masked to −∞ or 0;
// routers in float32, fp16 and bf16: route_mv where there are no groups,
// else the product and route)
// followed by Experts (dense and GPTQ experts), against the CPU. The
// routing decisions must agree (random logits have no near-ties): the
// experts and weights chosen are compared (weights to 1e-5, the logits'
// float32 sums differ in order), and the outputs agree to matmul
// precision: 2e-5 · max|out|.
func testMoE(t *testing.T, g *Backend, c *cpu.Backend) {
	rng := rand.New(rand.NewPCG(17, 18))
	const E, H, I = 16, 48, 32
	var gex, cex []backend.Expert
	for e := range E {
		mk := denseWeight(dtype.BF16)
		if e%3 == 1 {
			mk = gptqWeight(4, 16, true, false, 1)
		}
		ge, ce := loadExpertsBoth(t, g, c, rng, mk, 1, H, I)
		gex, cex = append(gex, ge...), append(cex, ce...)
	}
	bias := randn(rng, E, 0.05)
	routers := []backend.Router{
		{TopK: 2, Normalize: true},
		{TopK: 4},
		{TopK: 3, Sigmoid: true, Normalize: true, Scale: 2.5},
		{TopK: 4, Sigmoid: true, Normalize: true, Groups: 4, TopKGroups: 2, Scale: 1.8},
		{TopK: 3, Sigmoid: true, Normalize: true, Groups: 4, TopKGroups: 2, GroupMaskZero: true},
		{TopK: 2, Sigmoid: true, Groups: 16, TopKGroups: 3},
	}
	for ri, r := range routers {
		grt, crt := loadBoth(t, g, c, denseWeight([]dtype.DType{dtype.F32, dtype.F16, dtype.BF16}[ri%3])(rng, E, H))
		for _, withBias := range []bool{false, true} {
			if withBias && !r.Sigmoid {
				continue
			}
			gr, cr := r, r
			if withBias {
				gr.Bias, cr.Bias = g.LoadVector(bias), c.LoadVector(bias)
			}
			for _, M := range []int{1, 7, 40} {
				name := fmt.Sprintf("router %d bias %v M%d", ri, withBias, M)
				x := tensors(t, g, c, M, H, randn(rng, M*H, 1))
				gs, cs := g.NewSelection(M+2, r.TopK), c.NewSelection(M+2, r.TopK)
				norm := (ri+M)%2 == 0 // the block's norm folded into the router
				if norm {
					name += " norm"
				}
				x = routeInto(t, g, c, rng, name, gs, cs, x, grt, crt, &gr, &cr, norm)
				compareSelections(t, name, g, gs.(*selection), cs, M)
				h0 := randn(rng, M*H, 1)
				d := tensors(t, g, c, M, H, h0)
				g.ExpertsAdd(d.g, x.g, gs, gex, nil)
				c.ExpertsAdd(d.c, x.c, cs, cex, nil)
				got, want := d.read(t, g, c)
				compare(t, name, got, want, 0, 2e-5*maxAbs(sub(want, h0))+1e-6*maxAbs(h0))
				checkSelection(t, name, g, gs.(*selection), M, E)
			}
		}
	}
	mustSync(t, g)
}

// routeInto routes x on both backends into the selections gs and cs: with
// norm, through an RMS norm of random weights folded into the router,
// whose output xn it checks against the CPU's (1e-6 of the largest value)
// and returns as the routed input; else x itself.
func routeInto(t *testing.T, g *Backend, c *cpu.Backend, rng *rand.Rand, name string, gs, cs backend.Selection, x pair,
	grt, crt backend.Matrix, gr, cr *backend.Router, norm bool) pair {
	t.Helper()
	if !norm {
		g.Route(gs, nil, x.g, nil, grt, gr)
		c.Route(cs, nil, x.c, nil, crt, cr)
		return x
	}
	nw := randn(rng, x.cols, 1)
	gn := &backend.Norm{W: g.LoadVector(nw), Eps: 1e-5}
	cn := &backend.Norm{W: c.LoadVector(nw), Eps: 1e-5}
	xn := tensors(t, g, c, x.rows, x.cols, randn(rng, x.rows*x.cols, 1)) // (poisoned)
	g.Route(gs, xn.g, x.g, gn, grt, gr)
	c.Route(cs, xn.c, x.c, cn, crt, cr)
	got, want := xn.read(t, g, c)
	compare(t, name+" xn", got, want, 0, 1e-6*maxAbs(want))
	return xn
}

// compareSelections checks that the first M rows of the GPU selection gs
// chose the experts of the CPU's cs, in the same order, with weights
// within 1e-5 relative.
func compareSelections(t *testing.T, name string, g *Backend, gs *selection, cs backend.Selection, M int) {
	t.Helper()
	raw := make([]float32, 2*gs.rows*gs.k)
	if err := g.Read(raw, &tensor{buf: gs.buf, rows: 2 * gs.rows, cols: gs.k}); err != nil {
		t.Fatal(err)
	}
	ids, wts := cpu.SelectionOf(cs)
	for i := range M * gs.k {
		id, w := int32(math.Float32bits(raw[i])), raw[gs.rows*gs.k+i]
		if id != ids[i] || math.Abs(float64(w-wts[i])) > 1e-5*math.Abs(float64(wts[i])) {
			t.Errorf("%s: row %d choice %d: expert %d weight %g, CPU expert %d weight %g", name, i/gs.k, i%gs.k, id, w, ids[i], wts[i])
		}
	}
}

// checkSelection reads the GPU's choices back: distinct experts in range,
// finite positive weights.
func checkSelection(t *testing.T, name string, g *Backend, s *selection, M, E int) {
	t.Helper()
	tmp := &tensor{buf: s.buf, rows: 2 * s.rows, cols: s.k}
	raw := make([]float32, 2*s.rows*s.k)
	if err := g.Read(raw, tmp); err != nil {
		t.Fatal(err)
	}
	for r := range M {
		seen := map[int32]bool{}
		for j := range s.k {
			id := int32(math.Float32bits(raw[r*s.k+j]))
			w := raw[s.rows*s.k+r*s.k+j]
			if id < 0 || int(id) >= E || seen[id] || !(w > 0) || math.IsInf(float64(w), 0) {
				t.Errorf("%s: row %d choice %d: expert %d weight %g", name, r, j, id, w)
			}
			seen[id] = true
		}
	}
}
