//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// TestExpertsOnDevice checks the device-side expert dispatch (no host
// synchronisation) against the CPU backend on random data: packed int4
// (symmetric and with zero points), FP4, BF16 and EXL3 (trellis.go's
// expertsTrellis) experts, decode-sized
// batches (1, 5 and 32 rows of top-4 over 16 experts) and one past
// moeDeviceSlots (the host-grouped path), outputs poisoned. Both sides
// route the same logits (the choices must agree: random logits have no
// near-ties). Tolerance: the 4-bit decode kernels round x to fp16 (2^-11
// a product, in the gate/up and again in the down products), so
// |Δ| ≤ 5e-3 · max|out|; BF16 experts carry x to ~16 bits: 1e-4 · max|out|.
func TestExpertsOnDevice(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(41, 42))
	const E, H, I = 16, 256, 128
	cases := []struct {
		name string
		mk   func(rng *rand.Rand, n, k int) *quant.Weight
		tol  float64
	}{
		{"int4-g128", gptqWeight(4, 128, false, false, 0), 5e-3},
		{"int4-g32-asym", gptqWeight(4, 32, true, false, 0), 5e-3},
		{"fp4-g32", fp4Weight(32), 5e-3},
		{"nvfp4", nvfp4Weight, 5e-3}, // packed as FP4 g16: moe_qmv_fp4_g16
		{"fp8", fp8Weight, 5e-3},     // qmv8 in the tiled layout: moe_qmv_fp8
		{"int8-g128", gptqWeight(8, 128, false, false, 0), 5e-3},
		{"int8-g32-asym", gptqWeight(8, 32, true, false, 1), 5e-3},
		{"bf16", denseWeight(dtype.BF16), 1e-4},
		{"exl3-4", exl3Weight(4, quant.Codebook3INST), 5e-3},
		{"exl3-3-mul1", exl3Weight(3, quant.CodebookMUL1), 5e-3},
	}
	for _, cs := range cases {
		gex, cex := loadExpertsBoth(t, g, c, rng, cs.mk, E, H, I)
		r := backend.Router{TopK: 4, Sigmoid: true, Normalize: true, Scale: 1.8}
		for _, M := range []int{1, 5, 32, 70} {
			name := fmt.Sprintf("%s M%d", cs.name, M)
			gs, csel := routeBoth(t, g, c, rng, M, E, &r)
			x := tensors(t, g, c, M, H, randn(rng, M*H, 1))
			h0 := randn(rng, M*H, 1)
			d := tensors(t, g, c, M, H, h0)
			g.ExpertsAdd(d.g, x.g, gs, gex, nil)
			c.ExpertsAdd(d.c, x.c, csel, cex, nil)
			got, want := d.read(t, g, c)
			compare(t, name, got, want, 0, cs.tol*maxAbs(sub(want, h0))+1e-6*maxAbs(h0))
			if lt := g.mat(gex[0].Gate).lists; lt == nil || lt.set == nil || lt.set.table == nil || !lt.set.table.ok {
				t.Errorf("%s: the experts did not take the device path", name)
			}
		}
	}
	mustSync(t, g)
}

// TestHeadsOnDevice checks HeadMatMul's one-launch path (dense float32,
// fp16 and bf16 heads; 1 to 64 rows, row chunks of 8 with a partial one)
// and the per-head path past 64 rows against the CPU on random data, with
// columns outside the heads' ranges left alone. Tolerance: float32 sums
// of K products in another order, 1e-5 · Σ|x·w| bounded by 1e-5 · K ·
// max|x|·max|w| (here 4e-5 · max|out| suffices, as in testHeadMatMul).
func TestHeadsOnDevice(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(43, 44))
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		for _, M := range []int{1, 9, 64, 70} {
			heads, rows, cols := 7, 40, 96
			xStride, dStride := 100, 45
			var gws, cws []backend.Matrix
			for range heads {
				w := denseWeight(dt)(rng, rows, cols)
				gw, err := g.LoadMatrix(w)
				if err != nil {
					t.Fatal(err)
				}
				cw, _ := c.LoadMatrix(w)
				gws, cws = append(gws, gw), append(cws, cw)
			}
			x := tensors(t, g, c, M, heads*xStride, randn(rng, M*heads*xStride, 1))
			d := tensors(t, g, c, M, heads*dStride, randn(rng, M*heads*dStride, 1))
			g.HeadMatMul(d.g, x.g, gws, dStride, xStride)
			c.HeadMatMul(d.c, x.c, cws, dStride, xStride)
			got, want := d.read(t, g, c)
			compare(t, fmt.Sprintf("HeadMatMul %s M%d", dt, M), got, want, 0, 4e-5*maxAbs(want))
		}
	}
	mustSync(t, g)
}

// TestMLAAttentionLong runs the latent (MLA) attention kernels at
// GLM-4.7-Flash's shape (20 heads sharing one 576-number key whose first
// 512 numbers are the value) over contexts up to ~1300 positions: prefill
// chunks, decode rows of four sequences, mixed, against the CPU: attn_mla
// over a float32 and a bfloat16 cache, attn_mla_tc (the tensor-core
// kernel, taken for bfloat16) over bfloat16 at that shape and at three
// others: few heads (one 16-row tile) with the fixtures' small dims, 40
// heads (two head groups), and dv = 192 (value columns of a partial
// tile set); with the decode rows' heads in groups of at most 16 (the
// default: 20 heads in two blocks of 10, 17 in 9 and 8) or 32 (20 in one);
// and 40 and 72 heads (two groups of 20, three of 24). Tolerance as
// testAttention: 2e-5·(1 + |cpu|) — attn_mla_tc multiplies the queries and
// probabilities as two bf16 parts (16 bits of each), ~1e-5 relative after
// the 576-term sums.
func TestMLAAttentionLong(t *testing.T) {
	defer func(most int) { mlaTCOn, mlaTCDecodeHeads = true, most }(mlaTCDecodeHeads)
	for _, cs := range []struct {
		dt                  dtype.DType
		tc                  bool
		heads, dk, dv, most int
	}{
		{dtype.F32, false, 20, 576, 512, 16},
		{dtype.BF16, false, 20, 576, 512, 16},
		{dtype.BF16, true, 20, 576, 512, 16},
		{dtype.BF16, true, 20, 576, 512, 32},
		{dtype.BF16, true, 3, 48, 32, 16},
		{dtype.BF16, true, 40, 160, 128, 16},
		{dtype.BF16, true, 72, 64, 64, 16},
		{dtype.BF16, true, 17, 256, 192, 16},
	} {
		t.Run(fmt.Sprintf("%s-tc%v-h%d-dk%d-dv%d-most%d", cs.dt, cs.tc, cs.heads, cs.dk, cs.dv, cs.most), func(t *testing.T) {
			mlaTCOn, mlaTCDecodeHeads = cs.tc, cs.most
			testMLAAttentionLong(t, cs.dt, cs.heads, cs.dk, cs.dv)
		})
	}
}

func testMLAAttentionLong(t *testing.T, dt dtype.DType, heads, dk, dv int) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(45, 46))
	const bs = 16
	spec := backend.KVSpec{Layers: 1, KVHeads: 1, KeyDim: dk, ValueDim: dv, ValueInKey: true, BlockSize: bs, Blocks: 4 * 80, DType: dt}
	if k := g.mlaKernelFor(dk, dv, heads, 1, kvBF16); dt == dtype.BF16 && k.tc != mlaTCOn {
		t.Fatalf("attn_mla_tc taken %v, want %v", k.tc, mlaTCOn)
	}
	gc, err := g.NewKVCache(spec)
	if err != nil {
		t.Fatal(err)
	}
	cc, _ := c.NewKVCache(spec)
	const nseq = 4
	tables := blockTables(rng.Perm(spec.Blocks), nseq, 80)
	done := make([]int, nseq)
	scale := float32(0.07)
	step := func(lens []int) {
		bt := stepBatch(lens, tables, done)
		M := len(bt.Tokens)
		q := tensors(t, g, c, M, heads*dk, randn(rng, M*heads*dk, 1))
		k := tensors(t, g, c, M, dk, randn(rng, M*dk, 1))
		out := tensors(t, g, c, M, heads*dv, nil)
		g.Attention(out.g, q.g, k.g, nil, gc, 0, &bt, scale, nil)
		c.Attention(out.c, q.c, k.c, nil, cc, 0, &bt, scale, nil)
		got, want := out.read(t, g, c)
		compare(t, fmt.Sprintf("MLA attention, rows %v (context %v)", lens, done), got, want, 2e-5, 2e-5)
	}
	step([]int{1000, 300, 7, 1}) // prefill chunks
	step([]int{1, 1, 1, 1})
	step([]int{1, 0, 1, 0})
	step([]int{200, 1, 1, 1})
	mustSync(t, g)
}

// TestMLAPrologue checks the one-launch MLA prologue (mla_prologue)
// against the CPU backend's MLAPrologue (which equals the sequence of
// CopyCols, RMSNorm and RoPE it stands for, backend/cpu's TestMLAPrologue)
// on random data, and the CUDA fallback (the op sequence, taken with
// MARLIN_CUDA_MOE_FAST=0) likewise: the GLM-4.7-Flash head shape
// and an odd one with a partial rotary part, both rope conventions,
// positions past the rope table's first size. qf's latent columns hold
// random values that neither side may touch.
func TestMLAPrologue(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(43, 44))
	for _, cs := range []struct {
		M, heads, nope, lora, rp, half int
		inter                          bool
	}{
		{1, 20, 192, 512, 64, 32, true},
		{3, 20, 192, 512, 64, 32, false},
		{5, 3, 6, 40, 10, 4, true},
		{2, 2, 0, 36, 8, 4, false},
	} {
		name := fmt.Sprintf("M%d-h%d-nope%d-lora%d-rope%d/%d-inter%v", cs.M, cs.heads, cs.nope, cs.lora, cs.rp, 2*cs.half, cs.inter)
		kd, hd := cs.lora+cs.rp, cs.nope+cs.rp
		rope := testRope(cs.half, 1, cs.inter)
		pos := make([]int32, cs.M)
		for i := range pos {
			pos[i] = int32(rng.IntN(3000))
		}
		norm := randn(rng, cs.lora, 1)
		gn, cn := g.LoadVector(norm), c.LoadVector(norm)
		kva := tensors(t, g, c, cs.M, kd, randn(rng, cs.M*kd, 2))
		qv, qfv := randn(rng, cs.M*cs.heads*hd, 1), randn(rng, cs.M*cs.heads*kd, 1)
		q := tensors(t, g, c, cs.M, cs.heads*hd, qv)
		qf := tensors(t, g, c, cs.M, cs.heads*kd, qfv)
		key := tensors(t, g, c, cs.M, kd, nil)
		c.MLAPrologue(key.c, qf.c, kva.c, q.c, cn, 1e-6, cs.heads, cs.nope, rope, pos)
		for _, seq := range []bool{false, true} { // the launch, then the op sequence it stands for
			g.moe.off = seq
			g.Write(qf.g, qfv)
			g.Write(q.g, qv)
			g.MLAPrologue(key.g, qf.g, kva.g, q.g, gn, 1e-6, cs.heads, cs.nope, rope, pos)
			g.moe.off = false
			got, want := key.read(t, g, c)
			compare(t, fmt.Sprintf("%s sequence %v: key", name, seq), got, want, 1e-6, 1e-6)
			got, want = qf.read(t, g, c)
			compare(t, fmt.Sprintf("%s sequence %v: qf", name, seq), got, want, 1e-6, 1e-6)
		}
	}
}

// TestExpertsAdd checks the shared expert as one more slot of the device
// expert launches, added with the routed experts to the residual stream,
// against the CPU backend's ExpertsAdd on random data: int4 g128, BF16 and
// EXL3 experts, 1, 5 and 32 rows of top-4 over 16 experts; and a shared expert
// twice as wide as the routed ones, which takes the other path (routed
// experts expert by expert, the shared one through SwiGLU and MatMulAdd).
// The residual stream holds random values (it is added to). Tolerance as
// TestExpertsOnDevice's, of max|experts + shared|.
func TestExpertsAdd(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(45, 46))
	const E, H, I = 16, 256, 128
	for _, cs := range []struct {
		name string
		mk   func(rng *rand.Rand, n, k int) *quant.Weight
		tol  float64
		wide bool // shared expert of intermediate 2·I
	}{
		{"int4-g128", gptqWeight(4, 128, false, false, 0), 5e-3, false},
		{"nvfp4", nvfp4Weight, 5e-3, false},
		{"fp8", fp8Weight, 5e-3, false},
		{"int8-g128-asym", gptqWeight(8, 128, true, false, 1), 5e-3, false},
		{"bf16", denseWeight(dtype.BF16), 1e-4, false},
		{"exl3-4", exl3Weight(4, quant.Codebook3INST), 5e-3, false},
		{"int4-g128-wide-shared", gptqWeight(4, 128, false, false, 0), 5e-3, true},
	} {
		gex, cex := loadExpertsBoth(t, g, c, rng, cs.mk, E, H, I)
		si := I
		if cs.wide {
			si = 2 * I
		}
		gs1, cs1 := loadExpertsBoth(t, g, c, rng, cs.mk, 1, H, si)
		gsh, csh := gs1[0], cs1[0]
		r := backend.Router{TopK: 4, Sigmoid: true, Normalize: true, Scale: 1.8}
		for _, M := range []int{1, 5, 32} {
			name := fmt.Sprintf("%s M%d", cs.name, M)
			gs, csel := routeBoth(t, g, c, rng, M, E, &r)
			x := tensors(t, g, c, M, H, randn(rng, M*H, 1))
			h0 := randn(rng, M*H, 1)
			h := tensors(t, g, c, M, H, h0)
			g.ExpertsAdd(h.g, x.g, gs, gex, &gsh)
			c.ExpertsAdd(h.c, x.c, csel, cex, &csh)
			got, want := h.read(t, g, c)
			compare(t, name, got, want, 0, cs.tol*maxAbs(sub(want, h0))+1e-6*maxAbs(h0))
		}
	}
	mustSync(t, g)
}

// loadExpertsBoth makes n random experts (gate and up [I, H], down [H, I])
// with mk and loads each on the GPU backend g and the CPU backend c.
func loadExpertsBoth(t *testing.T, g, c backend.Backend, rng *rand.Rand, mk func(rng *rand.Rand, n, k int) *quant.Weight, n, H, I int) (gex, cex []backend.Expert) {
	t.Helper()
	for range n {
		var ge, ce backend.Expert
		for i, sh := range [3][2]int{{I, H}, {I, H}, {H, I}} {
			gw, cw := loadBoth(t, g, c, mk(rng, sh[0], sh[1]))
			switch i {
			case 0:
				ge.Gate, ce.Gate = gw, cw
			case 1:
				ge.Up, ce.Up = gw, cw
			case 2:
				ge.Down, ce.Down = gw, cw
			}
		}
		gex, cex = append(gex, ge), append(cex, ce)
	}
	return gex, cex
}

// routeBoth routes the same M random rows through the same random bf16
// router over E experts with r on the GPU backend g and the CPU backend c,
// and checks that both chose alike.
func routeBoth(t *testing.T, g *Backend, c *cpu.Backend, rng *rand.Rand, M, E int, r *backend.Router) (gs, cs backend.Selection) {
	t.Helper()
	const H = 64
	x := tensors(t, g, c, M, H, randn(rng, M*H, 1))
	grt, crt := loadBoth(t, g, c, denseWeight(dtype.BF16)(rng, E, H))
	gs, cs = g.NewSelection(M, r.TopK), c.NewSelection(M, r.TopK)
	g.Route(gs, nil, x.g, nil, grt, r)
	c.Route(cs, nil, x.c, nil, crt, r)
	compareSelections(t, fmt.Sprintf("route of %d rows", M), g, gs.(*selection), cs, M)
	return gs, cs
}

// TestMLADecodeSpeed times the latent attention of one decode row at the
// GLM-4.7-Flash head shape (20 heads, 576-number keys, 512-number values)
// over contexts of 512 and 2048 positions, device time from CUDA events
// with graphs on (the timed sequence repeats: captured, then replayed),
// the layer rotated among 48 (GLM's 47) so that the caches (2.4 MB a
// layer at 2K in bf16, 113 MB in all) exceed the 50 MB L2 cache, as in
// the model's step: attn_mla over float32 and bfloat16 caches,
// attn_mla_tc (and its attn_merge) over bfloat16, with its default
// splits and with 16 and 32, and with all 20 heads in one block (its
// default at decode: two blocks of 10).
// Prints "mla <cache> <kernel> <context> <µs>"; no assertion.
func TestMLADecodeSpeed(t *testing.T) {
	g := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	most := mlaTCDecodeHeads
	defer func() { mlaTCOn, attnSplitForce, mlaTCDecodeHeads = true, 0, most }()
	const heads, dk, dv, bs, layers = 20, 576, 512, 16, 48
	rng := rand.New(rand.NewPCG(53, 54))
	for _, n := range []int{512, 2048} {
		spec := func(dt dtype.DType) backend.KVSpec {
			return backend.KVSpec{Layers: layers, KVHeads: 1, KeyDim: dk, ValueDim: dv, ValueInKey: true, BlockSize: bs, Blocks: n / bs, DType: dt}
		}
		for _, cs := range []struct {
			dt dtype.DType
			tc bool
		}{{dtype.F32, false}, {dtype.BF16, false}, {dtype.BF16, true}} {
			mlaTCOn = cs.tc
			name := map[bool]string{false: "attn_mla", true: "attn_mla_tc"}[cs.tc]
			fmt.Printf("mla %s %s %d %.2f µs\n", cs.dt, name, n, decodeAttentionSpeed(t, g, spec(cs.dt), heads, n, 0.07, nil, rng))
		}
		for _, P := range []int{16, 32} { // attn_mla_tc with fewer splits than its default
			attnSplitForce = P
			fmt.Printf("mla BF16 attn_mla_tc(P=%d) %d %.2f µs\n", P, n, decodeAttentionSpeed(t, g, spec(dtype.BF16), heads, n, 0.07, nil, rng))
		}
		for _, P := range []int{0, 32} { // attn_mla_tc with the 20 heads in one block, not two
			attnSplitForce, mlaTCDecodeHeads = P, 32
			fmt.Printf("mla BF16 attn_mla_tc(P=%d, 20 heads a block) %d %.2f µs\n", P, n, decodeAttentionSpeed(t, g, spec(dtype.BF16), heads, n, 0.07, nil, rng))
		}
		attnSplitForce, mlaTCDecodeHeads = 0, most
	}
}

// TestRouteClusters checks route_mv with a row's blocks in one
// thread-block cluster (route_mv_*_cl: 2 … 8 blocks of 8 experts) and
// without, against the CPU's Route on random data: 8 experts (one block,
// never a cluster), 40, 64 (GLM-4.7-Flash's count, a cluster of 8) and 72
// (nine blocks: no cluster); GLM's sigmoid routing with a selection bias
// and scale, and softmax; the block's norm folded in or not; 1 and 3
// rows. Choices must agree, weights to 1e-5 relative (the logits' float32
// sums differ in order from the CPU's), the normed rows to 1e-6.
func TestRouteClusters(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(61, 62))
	const H = 256
	defer func() { routeClusterOn = true }()
	for _, E := range []int{8, 40, 64, 72} {
		bias := randn(rng, E, 0.05)
		grt, crt := loadBoth(t, g, c, denseWeight(dtype.BF16)(rng, E, H))
		for _, r := range []backend.Router{
			{TopK: 4, Sigmoid: true, Normalize: true, Scale: 1.8},
			{TopK: 2, Normalize: true},
		} {
			gr, cr := r, r
			if r.Sigmoid {
				gr.Bias, cr.Bias = g.LoadVector(bias), c.LoadVector(bias)
			}
			for _, cl := range []bool{true, false} {
				routeClusterOn = cl
				for _, M := range []int{1, 3} {
					for _, norm := range []bool{false, true} {
						name := fmt.Sprintf("E%d sigmoid %v cluster %v M%d norm %v", E, r.Sigmoid, cl, M, norm)
						x := tensors(t, g, c, M, H, randn(rng, M*H, 1))
						gs, cs := g.NewSelection(M, r.TopK), c.NewSelection(M, r.TopK)
						routeInto(t, g, c, rng, name, gs, cs, x, grt, crt, &gr, &cr, norm)
						compareSelections(t, name, g, gs.(*selection), cs, M)
					}
				}
			}
		}
	}
	mustSync(t, g)
}
