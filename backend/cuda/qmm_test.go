//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// matmulTol is the tolerance of MatMul relative to Σ_k|x·w|: 1e-5 for the
// float32 kernels; for the tensor-core decode kernels (M ≤ 16, and in
// parts of ≤ 16 rows below the cuBLAS path; packed 4-bit and dense 16-bit
// weights), whose operands are x rounded to fp16
// (bf16 for bf16 weights) and weights rounded to fp16, each product is off
// by at most ~2·2^-11 (fp16) or 2^-8 (bf16) relatively: 2e-3 and 5e-3.
// Weights that packing moved (NVFP4: its scales rounded to fp16 once) add
// that bound, the matrix's rounding (2^-11), to every kernel's.
func matmulTol(w backend.Matrix, M int) float64 {
	return kernelTol(w, M) + w.(*matrix).rounding
}

// kernelTol is matmulTol's part for the kernel that runs an M-row product
// of w.
func kernelTol(w backend.Matrix, M int) float64 {
	m := w.(*matrix)
	if m.owner.wgGemm(m, M) || m.owner.tcGemm(m, M) {
		return 2e-3 // wg_qgemm, tc_qgemm: x and (q − z)·s rounded to fp16
	}
	if m.owner.takesGemm(m, M) && m.cols%8 == 0 && m.owner.blas != nil {
		// the cuBLAS path (cublas.go): x in fp16 (bf16), 4-bit weights
		// rounded to fp16
		switch {
		case m.f == fmtPInt4, m.f == fmtPFP4, m.f == fmtF16:
			return 2e-3
		case m.f == fmtBF16:
			return 6e-3
		case m.owner.dequantKernel(m) != 0:
			return 2e-3 // dequant_rows: (q − z)·s and x rounded to fp16
		}
	}
	if M > 16 && m.owner.decodeParts(m, M) == 0 {
		return 1e-5
	}
	switch m.f {
	case fmtPInt4, fmtPFP4, fmtF16:
		if m.f != fmtF16 || m.cols%32 == 0 {
			return 2e-3
		}
	case fmtGPTQ, fmtFP8:
		if m.owner.decodeParts(m, M) != 0 {
			return 2e-3 // qmv8 (in parts of 8 rows): x rounded to fp16
		}
	case fmtBF16:
		if m.cols%32 == 0 {
			return 5e-3
		}
	}
	return 1e-5
}

// TestYoutRowsFrom checks the outputs of a part of the rows: every output
// pointer moves by its own row stride, absent ones stay absent.
func TestYoutRowsFrom(t *testing.T) {
	o := yout{y0: 1000, y1: 5000, ld0: 10, ld1: 3, n1: 4, n2: 7, mode: youtSplit, accum: 1}
	p := o.rowsFrom(5)
	want := o
	want.y0, want.y1 = 1000+4*5*10, 5000+4*5*3
	if p != want {
		t.Errorf("rowsFrom(5) of %+v = %+v, want %+v", o, p, want)
	}
	if q := o.rowsFrom(0); q != o {
		t.Errorf("rowsFrom(0) changed %+v to %+v", o, q)
	}
}

// TestChooseTileCluster checks the decode products' choice between the
// stripes and tile clusters on the H100's numbers (132 multiprocessors, 4
// blocks of either kernel resident on each; 528, 264, 124 and 62 clusters
// of 1, 2, 4 and 8) for the shapes measured in docs/cuda-kernels.md
// (sixth session), each expecting the split that was fastest or within a
// few percent of it there.
func TestChooseTileCluster(t *testing.T) {
	const slots = 528
	resident := func(C int) int { return map[int]int{1: 528, 2: 264, 4: 124, 8: 62}[C] }
	for _, c := range []struct {
		k, n, m, want int
	}{
		{14336, 4096, 1, 0}, {14336, 4096, 16, 4}, // one wave of C = 4, not two of 8
		{28672, 8192, 1, 0}, {28672, 8192, 16, 0},
		{4096, 14336, 1, 0}, {4096, 14336, 4, 0}, {4096, 14336, 16, 2},
		{4096, 6144, 1, 0}, {4096, 6144, 16, 4},
		{8192, 28672, 1, 0}, {8192, 28672, 16, 0},
		{4096, 128256, 16, 0},
		{2048, 1344, 1, 8}, {768, 5120, 1, 2}, {1536, 2048, 1, 4}, {5120, 2048, 1, 8}, {2048, 3072, 16, 8},
	} {
		ntiles, spt := c.n/64, c.k/32
		if got := chooseTileCluster(ntiles, spt, c.m, stripeGrid(slots, ntiles*spt), slots, resident); got != c.want {
			t.Errorf("K %d N %d M %d: cluster size %d, want %d", c.k, c.n, c.m, got, c.want)
		}
	}
	// MARLIN_TC_SHARE=1: the one-row q/k/v product of the 8B shape (384 of
	// 528 stripe blocks) on clusters of 4, gate/up's (a full grid) not
	defer func(s int) { tileClusterShare = s }(tileClusterShare)
	tileClusterShare = 1
	for _, c := range []struct{ k, n, want int }{{4096, 6144, 4}, {4096, 28672, 0}, {14336, 4096, 0}} {
		ntiles, spt := c.n/64, c.k/32
		if got := chooseTileCluster(ntiles, spt, 1, stripeGrid(slots, ntiles*spt), slots, resident); got != c.want {
			t.Errorf("share 1, K %d N %d M 1: cluster size %d, want %d", c.k, c.n, got, c.want)
		}
	}
}

// TestTCSplits checks tc_qgemm's choice of split-K: in range (each split
// at least 16 steps), none when the tiles alone give every multiprocessor
// two blocks, and a split that does so when few tiles leave most of them
// idle and K is long.
func TestTCSplits(t *testing.T) {
	for _, c := range []struct{ tiles, spt, sms int }{
		{224, 256, 132}, {112, 128, 132}, {32, 448, 132}, {64, 896, 132}, {896, 256, 132}, {3, 20, 132}, {1, 8, 132},
	} {
		if S := tcSplits(c.tiles, c.spt, c.sms); S < 1 || S > 16 || S > 1 && c.spt/S < 16 {
			t.Errorf("tcSplits(%d, %d, %d) = %d: out of range", c.tiles, c.spt, c.sms, S)
		}
	}
	for _, tiles := range []int{264, 528, 896} {
		if S := tcSplits(tiles, 256, 132); S != 1 {
			t.Errorf("tcSplits(%d, 256, 132) = %d, want 1", tiles, S)
		}
	}
	for _, c := range []struct{ tiles, spt int }{{32, 448}, {20, 256}, {66, 512}} {
		if S := tcSplits(c.tiles, c.spt, 132); c.tiles*S < 132 || c.tiles*S > 3*132 {
			t.Errorf("tcSplits(%d, %d, 132) = %d: %d blocks, want 132 to 396", c.tiles, c.spt, S, c.tiles*S)
		}
	}
}

// TestWGFormFor checks wg_qgemm's form choice at the edges of its ranges
// (the measured table it follows: docs/cuda-kernels.md, tenth session).
func TestWGFormFor(t *testing.T) {
	for _, c := range []struct{ M, N, K, want int }{
		{17, 4096, 14336, 0}, {64, 28672, 8192, 0}, // 128 × 64 blocks up to 64 rows
		{65, 4096, 14336, 0}, {128, 14336, 4096, 0}, // small weights: still 128 × 64 at 65–128
		{65, 28672, 8192, 1}, {128, 8192, 28672, 1}, // 2^27 values and more: 256 × 64 from 65
		{129, 4096, 14336, 1}, {256, 14336, 4096, 1}, // 256 × 64 at 129–256 for all
		{257, 4096, 14336, 2}, {2048, 28672, 8192, 2}, // the 128-token form beyond
	} {
		if got := wgFormFor(c.M, c.N, c.K); got != c.want {
			t.Errorf("wgFormFor(%d, %d, %d) = %d (%s), want %d (%s)", c.M, c.N, c.K, got, wgForms[got].name, c.want, wgForms[c.want].name)
		}
	}
}

// TestChooseWGSplit checks wg_qgemm's choice of split and sum on the
// products of the table (H100: 132 multiprocessors, 2 blocks of
// wg_qgemm each, 132 pairs) against the best measured of 11 splits
// (docs/cuda-kernels.md, eleventh session).
func TestChooseWGSplit(t *testing.T) {
	for _, c := range []struct {
		name        string
		tiles, spt  int
		pairs       int
		wantS       int
		wantCluster bool
	}{
		{"4096x14336 at 64 rows", 112, 128, 132, 2, true},
		{"4096x14336 at 64 rows, no clusters", 112, 128, 0, 1, false},
		{"4096x14336 at 256 rows", 224, 128, 132, 1, false},
		{"8192x28672 at 64 rows", 224, 256, 132, 1, false},
		{"8192x28672 at 256 rows", 448, 256, 132, 2, true},
		{"14336x4096 at 64 rows", 32, 448, 132, 4, false},
		{"14336x4096 at 256 rows", 64, 448, 132, 2, true},
		{"28672x8192 at 64 rows", 64, 896, 132, 4, false},
		{"28672x8192 at 256 rows", 128, 896, 132, 2, true},
		{"short K: no split", 448, 16, 132, 1, false},
	} {
		S, cl := chooseWGSplit(c.tiles, c.spt, 132, 2, c.pairs)
		if S != c.wantS || cl != c.wantCluster {
			t.Errorf("%s: chooseWGSplit(%d, %d) = %d, %v; want %d, %v", c.name, c.tiles, c.spt, S, cl, c.wantS, c.wantCluster)
		}
	}
	// any shape: a split in range, a cluster only of two and only with pairs
	for tiles := 1; tiles <= 600; tiles += 7 {
		for spt := 1; spt <= 1000; spt += 13 {
			for _, pairs := range []int{0, 40, 132} {
				S, cl := chooseWGSplit(tiles, spt, 132, 2, pairs)
				if S < 1 || S > 16 || S > 1 && spt/S < 16 || cl && (S != 2 || pairs == 0) {
					t.Fatalf("chooseWGSplit(%d, %d, pairs %d) = %d, %v: out of range", tiles, spt, pairs, S, cl)
				}
			}
		}
	}
}

// TestQMatMul checks the quantized products at the sizes that exercise
// what the small cases of TestOps cannot: split-K with the in-kernel
// reduction (large K, few column tiles), every M from 1 to 16 (the decode
// kernels), 17, 40, 63, 64 and 100 (tc_qgemm for the packed 4-bit
// formats; for the dense ones the decode kernels on parts of the rows
// below 64, cuBLAS from 64),
// GPTQ g128 and per-channel, act-order, FP4 g32, dense bf16/f16 (the wide
// and the narrow order of dmv at M ≤ 8), rows of x
// that are not 16-byte aligned (the generic kernel at 3 rows, tc_qgemm's
// conversion at 40), and the output of each run poisoned first. Against
// the float64 product of the reference dequantization, tolerance
// matmulTol.
func TestQMatMul(t *testing.T) {
	g := gpu(t)
	rng := rand.New(rand.NewPCG(21, 22))
	cases := []struct {
		name string
		make func(rng *rand.Rand, n, k int) *quant.Weight
		n, k int
	}{
		{"gptq-int4-g128-sym", gptqWeight(4, 128, false, false, 1), 200, 4096},
		{"gptq-int4-g128-asym-actorder", gptqWeight(4, 128, true, true, 0), 96, 2048},
		{"gptq-int4-perchannel-asym", gptqWeight(4, 0, true, false, 1), 70, 1024},
		{"gptq-int4-g32-sym", gptqWeight(4, 32, false, false, 1), 1000, 512},
		{"fp4-g32", fp4Weight(32), 130, 4096},
		{"fp4-g16", fp4Weight(16), 64, 512},
		{"mxfp4", mxfp4Weight, 130, 2048}, // packed as FP4 g32 (pack.go)
		{"nvfp4", nvfp4Weight, 130, 2048}, // packed as FP4 g16, scales rounded to fp16 (pack.go)
		{"bf16", denseWeight(dtype.BF16), 150, 2048},
		{"f16", denseWeight(dtype.F16), 66, 1024},
		{"f16-split-k", denseWeight(dtype.F16), 333, 6144},
		{"bf16-narrow", denseWeight(dtype.BF16), 150, 2080}, // K % 128 ≠ 0: dmv's narrow order at M ≤ 8
		// 8-bit GPTQ: qmv8 up to 16 rows (symmetric with a partial column
		// tile and many warps a tile; per-channel zero points, v2; g32
		// v1 zero points), dequantize + cuBLAS with act-order, where
		// N % 8 ≠ 0, and with zero points where N % 16 ≠ 0
		{"gptq-int8-g128-sym", gptqWeight(8, 128, false, false, 1), 200, 4096},
		{"gptq-int8-perchannel-asym-v2", gptqWeight(8, 0, true, false, 0), 528, 256},
		{"gptq-int8-g32-asym", gptqWeight(8, 32, true, false, 1), 1040, 512},
		{"gptq-int8-g64-asym-actorder", gptqWeight(8, 64, true, true, 1), 96, 1024},
		{"gptq-int8-g128-asym-n520", gptqWeight(8, 128, true, false, 1), 520, 512},
		{"gptq-int8-g32-sym-n70", gptqWeight(8, 32, false, false, 1), 70, 512},
		// FP8: qmv8 up to 16 rows (a partial column tile; K split among many warps)
		{"fp8", fp8Weight, 130, 2048},
		{"fp8-long", fp8Weight, 64, 8192},
	}
	// With an sm_90a image the first pass runs the 4-bit products of 17
	// rows and more on wg_qgemm (its default forms, at every size), the
	// second on its 64w form (forced), the third with K splits summed
	// through global memory instead of a cluster, the fourth with every
	// product split in three (a cluster of 3), the last on tc_qgemm and
	// cuBLAS.
	type pass struct {
		wg      bool
		form    int
		cluster bool
		split   int
	}
	passes := []pass{{false, -1, true, 0}}
	if g.wgmmaReady {
		passes = []pass{{true, -1, true, 0}, {true, 1, true, 0}, {true, -1, false, 0}, {true, -1, true, 3}, {false, -1, true, 0}}
		defer func(on bool, hi, form int, cl bool, split int) {
			g.wgmma, wgGemmMax, wgFormForce, wgClusterOn, wgSplitForce = on, hi, form, cl, split
		}(g.wgmma, wgGemmMax, wgFormForce, wgClusterOn, wgSplitForce)
		wgGemmMax = math.MaxInt
	}
	for i, p := range passes {
		g.wgmma, wgFormForce, wgClusterOn, wgSplitForce = p.wg, p.form, p.cluster, p.split
		for _, cs := range cases {
			// (subtests pass0/NAME … : memcheck runs one format's cases)
			t.Run(fmt.Sprintf("pass%d/%s", i, cs.name), func(t *testing.T) {
				w := cs.make(rng, cs.n, cs.k)
				gw, err := g.LoadMatrix(w)
				if err != nil {
					t.Fatal(err)
				}
				if w.Format == quant.GPTQ && w.Bits == 8 {
					fast := w.GIdx == nil && (w.Zeros == nil && cs.n%8 == 0 || cs.n%16 == 0)
					if got := g.fastKernel(gw.(*matrix), 1) != 0; got != fast {
						t.Fatalf("%s N%d: on qmv8 %v, want %v", cs.name, cs.n, got, fast)
					}
				}
				if w.Format == quant.FP8 && g.fastKernel(gw.(*matrix), 1) == 0 {
					t.Fatalf("%s N%d K%d: not on qmv8", cs.name, cs.n, cs.k)
				}
				Ms := []int{1, 2, 3, 4, 7, 8, 15, 16, 17, 40, 63, 64, 65, 100, 130, 300}
				if i > 0 {
					Ms = []int{17, 64, 100, 300}
				}
				for _, M := range Ms {
					xv := randn(rng, M*cs.k, 1)
					want := exactMatMul(w, xv, M)
					scale := absDot(w, xv, M)
					got := gpuMatMul(t, g, gw, xv, M)
					checkScaled(t, fmt.Sprintf("%s N%d K%d M%d wgmma %v form %d cluster %v", cs.name, cs.n, cs.k, M, p.wg, p.form, p.cluster), got, want, scale, matmulTol(gw, M))
				}
				// x rows at an odd offset: not 16-byte aligned (the generic
				// kernel at 3 rows, tc_qgemm's or wg_qgemm's conversion at 40)
				for _, M := range []int{3, 40} {
					unalignedX(t, g, rng, w, gw, cs.name, cs.n, cs.k, M)
				}
			})
		}
	}
}

// unalignedX checks m's product of M rows of x whose rows start at an odd
// float offset (not 16-byte aligned) against the float64 reference.
func unalignedX(t *testing.T, g *Backend, rng *rand.Rand, w *quant.Weight, gw backend.Matrix, name string, n, k, M int) {
	t.Helper()
	xv := randn(rng, M*(k+1), 1)
	xs := make([]float32, M*k)
	for m := range M {
		copy(xs[m*k:], xv[m*(k+1)+1:m*(k+1)+1+k])
	}
	x := g.NewTensor(M, k+1)
	g.Write(x, xv)
	y := g.NewTensor(M, n)
	g.Write(y, poison(M*n))
	g.enter()
	g.matmul(g.tensor(y).ptr(), n, g.tensor(x).ptr()+4, k+1, M, gw.(*matrix))
	g.leave()
	got := make([]float32, M*n)
	if err := g.Read(got, y); err != nil {
		t.Fatal(err)
	}
	checkScaled(t, fmt.Sprintf("%s unaligned x M%d", name, M), got, exactMatMul(w, xs, M), absDot(w, xs, M), matmulTol(gw, M))
}

// TestTileClusters checks the decode kernels' tile-cluster form (qmm.cu's
// TCL: a column tile's steps shared by a thread-block cluster, summed
// through distributed shared memory) on matrices wide and long enough to
// take it — the shapes of TestQMatMul are too small and run on the stripes —
// at M = 1 … 16, symmetric, asymmetric with act-order, and FP4, and with
// the input norm inside (M ≤ 4, no act-order), against the float64
// reference (matmulTol), with each cluster size (1, 2, 4, 8: forced
// through tileClusterForce) the steps allow (sm_90 and later; earlier
// devices skip).
func TestTileClusters(t *testing.T) {
	g := gpu(t)
	if g.cc < 90 {
		t.Skipf("skipping: compute capability %d.%d has no thread-block clusters", g.cc/10, g.cc%10)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	defer func(c int) { tileClusterForce = c }(tileClusterForce)
	ran := map[int]bool{}
	for _, cs := range []struct {
		name string
		make func(rng *rand.Rand, n, k int) *quant.Weight
		n, k int
	}{
		{"gptq-int4-g128-sym", gptqWeight(4, 128, false, false, 1), 130 * 64, 1024},
		{"gptq-int4-g128-asym-actorder", gptqWeight(4, 128, true, true, 0), 70 * 64, 2048},
		{"fp4-g32", fp4Weight(32), 140*64 - 24, 1024},
		{"gptq-int8-g128-sym", gptqWeight(8, 128, false, false, 1), 100*64 - 8, 1024},
		{"gptq-int8-g32-asym", gptqWeight(8, 32, true, false, 1), 90 * 64, 2048},
		{"fp8", fp8Weight, 100*64 - 3, 1024},
	} {
		w := cs.make(rng, cs.n, cs.k)
		gw, err := g.LoadMatrix(w)
		if err != nil {
			t.Fatal(err)
		}
		m := gw.(*matrix)
		for _, C := range []int{1, 2, 4, 8} {
			tileClusterForce = C
			for _, M := range []int{1, 3, 8, 9, 16} {
				if (m.f == fmtGPTQ || m.f == fmtFP8) && M > 8 {
					break // (qmv8: M ≤ 8)
				}
				f := g.fastKernel(m, M)
				if got := g.tileClusters(g.k.qmvTC[f], f, m, M); f == 0 || g.k.qmvTC[f] == 0 || got != C {
					if got == 0 && m.cols/32 < tileClusterMinSteps*qmvWarps*C {
						break // too few steps for C
					}
					t.Fatalf("%s N%d K%d M%d: tile clusters of %d, not %d (kernel %#x)", cs.name, cs.n, cs.k, M, got, C, f)
				}
				ran[C] = true
				xv := randn(rng, M*cs.k, 1)
				got := gpuMatMul(t, g, gw, xv, M)
				checkScaled(t, fmt.Sprintf("%s N%d K%d M%d C%d", cs.name, cs.n, cs.k, M, C), got, exactMatMul(w, xv, M), absDot(w, xv, M), matmulTol(gw, M))
				if M > 4 || m.desc.gidx != 0 {
					continue
				}
				// the input norm inside the product (qmv*_norm_tc, M ≤ 4)
				if _, nc := g.normCluster(m, M); (m.f == fmtPInt4 || m.f == fmtPFP4) && nc != C {
					t.Fatalf("%s N%d K%d M%d: the norm on clusters of %d, not %d", cs.name, cs.n, cs.k, M, nc, C)
				}
				nv := randn(rng, cs.k, 1)
				norm := &backend.Norm{W: g.LoadVector(nv), Eps: 1e-5}
				xn := refRMSNorm(xv, nv, norm.Eps)
				x, y := g.NewTensor(M, cs.k), g.NewTensor(M, cs.n)
				g.Write(x, xv)
				g.Write(y, poison(M*cs.n))
				g.MatMulN([]backend.Tensor{y}, x, []backend.Matrix{gw}, norm)
				gotN := make([]float32, M*cs.n)
				if err := g.Read(gotN, y); err != nil {
					t.Fatal(err)
				}
				checkScaled(t, fmt.Sprintf("%s N%d K%d M%d C%d with a norm", cs.name, cs.n, cs.k, M, C), gotN, exactMatMul(w, xn, M), absDot(w, xn, M), matmulTol(gw, M))
			}
		}
	}
	if len(ran) != 4 {
		t.Errorf("cluster sizes run: %v, want 1, 2, 4 and 8", ran)
	}
}

// TestChunkOps checks the sizes at which a recorded segment's chunks run:
// the first graphFirst ops, then each chunk twice the one before up to
// graphChunk; with growth 1 every later chunk graphChunk ops.
func TestChunkOps(t *testing.T) {
	for _, c := range []struct {
		first, chunk, grow int
		want               []int
	}{
		{16, 128, 2, []int{16, 32, 64, 128, 128}},
		{16, 128, 1, []int{16, 128, 128}},
		{24, 100, 3, []int{24, 72, 100, 100}},
		{200, 128, 2, []int{128, 128}},
	} {
		b := &Backend{graphFirst: c.first, graphChunk: c.chunk, graphGrow: c.grow}
		for i, w := range c.want {
			if got := b.chunkOps(i); got != w {
				t.Errorf("first %d, chunk %d, growth %d: chunk %d runs at %d ops, want %d", c.first, c.chunk, c.grow, i, got, w)
			}
		}
	}
}

// TestGraphSegments runs the same op sequence several times with changing
// staged inputs (positions of RoPE, tokens of Embed): the second run is
// captured, later ones replay the graph; every result must equal the
// CPU's, and the statistics must show the replays. Then with graphs off.
func TestGraphSegments(t *testing.T) {
	b := newGPU(t)
	if !b.graphsOn {
		t.Skip("skipping: MARLIN_CUDA_GRAPHS=0")
	}
	c := cpu.New(1)
	rng := rand.New(rand.NewPCG(5, 6))
	const V, H = 50, 64
	tab := denseWeight(dtype.F32)(rng, V, H)
	gt, _ := b.LoadMatrix(tab)
	ct, _ := c.LoadMatrix(tab)
	wq := gptqWeight(4, 32, false, false, 1)(rng, 96, H)
	gw, _ := b.LoadMatrix(wq)
	cw, _ := c.LoadMatrix(wq)
	rope := &backend.Rope{InvFreq: []float32{1, 0.1, 0.01, 0.001}, Scale: 1}
	norm := randn(rng, H, 1)
	gn, cn := b.LoadVector(norm), c.LoadVector(norm)
	gx, gy := b.NewTensor(1, H), b.NewTensor(1, 96)
	cx, cy := c.NewTensor(1, H), c.NewTensor(1, 96)
	got, want := make([]float32, 96), make([]float32, 96)
	for step := range 6 {
		if step == 4 {
			b.SetGraphs(false)
		}
		tok := []int32{int32(rng.IntN(V))}
		pos := []int32{int32(step * 7)}
		for _, be := range []struct {
			be   backend.Backend
			x, y backend.Tensor
			t, w backend.Matrix
			n    backend.Vector
		}{{b, gx, gy, gt, gw, gn}, {c, cx, cy, ct, cw, cn}} {
			be.be.Embed(be.x, be.t, tok)
			be.be.RMSNorm(be.x, be.x, be.n, 1e-5)
			be.be.RoPE(be.x, 2, 32, 0, rope, pos)
			be.be.MatMul(be.y, be.x, be.w)
			be.be.SiLUMul(be.y, be.y, be.y)
		}
		if err := b.Read(got, gy); err != nil {
			t.Fatal(err)
		}
		c.Read(want, cy)
		compare(t, fmt.Sprintf("step %d", step), got, want, 5e-3, 1e-4)
	}
	st := b.GraphStats()
	t.Logf("segments: %+v", st)
	if st.Captured != 1 || st.Replayed != 2 {
		t.Errorf("graph statistics %+v: want 1 capture and 2 replays", st)
	}
}

// speedShapes returns the K×N shapes of the speed tests: the Llama-3-8B
// projections, or those of MARLIN_QMM_SHAPES=K×N,....
func speedShapes() [][2]int {
	shapes := [][2]int{{4096, 14336}, {14336, 4096}, {8192, 28672}, {28672, 8192}}
	if s := os.Getenv("MARLIN_QMM_SHAPES"); s != "" {
		shapes = nil
		for _, f := range strings.Split(s, ",") {
			kn := strings.Split(f, "x")
			k, _ := strconv.Atoi(kn[0])
			n, _ := strconv.Atoi(kn[1])
			shapes = append(shapes, [2]int{k, n})
		}
	}
	return shapes
}

// speedRows returns the row counts M of TestQMatMulSpeed: 1 to 2048, or
// those of MARLIN_QMM_M (e.g. 1,4,16).
func speedRows() []int {
	rows := []int{1, 4, 16, 32, 64, 512, 2048}
	if s := os.Getenv("MARLIN_QMM_M"); s != "" {
		rows = nil
		for _, f := range strings.Split(s, ",") {
			if m, err := strconv.Atoi(f); err == nil && m > 0 {
				rows = append(rows, m)
			}
		}
	}
	return rows
}

// loadCopies loads copies of w until together they exceed 200 MB (more
// than the L2 cache, so that a timed product reads its weight from
// memory), at least two.
func loadCopies(t *testing.T, b *Backend, w *quant.Weight) []backend.Matrix {
	t.Helper()
	var ms []backend.Matrix
	var bytes int64
	for bytes < 200<<20 || len(ms) < 2 {
		m, err := b.LoadMatrix(w)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
		bytes += m.Bytes()
	}
	return ms
}

// matmulTimer returns timed, which queues reps products y = x·Wᵀ over the
// copies ms in turn and returns the device time of one from CUDA events,
// and done, which releases the events.
func matmulTimer(b *Backend, y, x backend.Tensor, ms []backend.Matrix) (timed func(reps int) time.Duration, done func()) {
	start, stop := b.newEvent(), b.newEvent()
	timed = func(reps int) time.Duration {
		start.record()
		for i := range reps {
			b.MatMul(y, x, ms[i%len(ms)])
		}
		stop.record()
		return stop.since(start) / time1(reps)
	}
	return timed, func() { start.destroy(); stop.destroy() }
}

// TestReadPatternSpeed measures how fast the memory serves two orders of
// reading the same bytes (ops.cu's read_probe, a grid of the decode
// kernels' shape: four 128-thread blocks a multiprocessor): the grid
// striding over them as a copy does, and each warp its own contiguous
// stretch, as the decode kernels' stripes do, into registers or through
// a cp.async ring in shared memory as the decode kernels stream their
// weights — the ring alone, then with the decode kernels' 4-bit
// dequantisation, their mma, both, and both with the weights as the mma's
// A operand (8 mma a KB instead of 16); and a row-major 16-bit matrix read
// in 4 KB warp steps of 64 rows × 64 bytes (dmv's narrow order) or 16 rows
// × 256 bytes (its wide order). Once over 1 GiB (the steady
// state) and over 30 MB regions rotated through it (the 4096×14336 INT4
// matrix: steady state plus a launch's fixed cost). It prints
// "readprobe <order> <bytes> <µs> <GB/s>"; no assertion (a measurement).
func TestReadPatternSpeed(t *testing.T) {
	b := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	const total = 1 << 30
	buf := b.NewTensor(1, total/4)
	sink := b.NewTensor(1, 1024)
	mustSync(t, b)
	b.enter()
	f := b.function("read_probe")
	b.leave()
	if f == 0 {
		t.Fatal("read_probe: not in the modules")
	}
	b.SetGraphs(false)
	start, stop := b.newEvent(), b.newEvent()
	defer start.destroy()
	defer stop.destroy()
	for _, size := range []int{total, 30 << 20} {
		for mode, name := range []string{"grid-stride", "stripes", "ring", "ring+dequant", "ring+mma", "ring+dequant+mma", "ring+dequant+mma(A)", "rows64x64B", "rows16x256B"} {
			run := func(i int) {
				off := uint64(i*size) % uint64(total-size+1)
				a := b.newArgs()
				a.ptr(b.tensor(buf).ptr() + off&^4095)
				a.u64(uint64(size / 16))
				a.i32(mode)
				a.ptr(b.tensor(sink).ptr())
				b.enter()
				b.launch(f, 4*b.sms, 1, 128, 4*6*1024, a)
				b.leave()
			}
			run(0)
			reps := max(10, total/size)
			start.record()
			for i := range reps {
				run(i)
			}
			stop.record()
			d := stop.since(start) / time.Duration(reps)
			fmt.Printf("readprobe %s %d %.2f %.1f\n", name, size, float64(d.Nanoseconds())/1e3, float64(size)/d.Seconds()/1e9)
		}
	}
	mustSync(t, b)
}

// speedFormat is a weight format TestQMatMulSpeed times.
type speedFormat struct {
	name string
	make func(rng *rand.Rand, n, k int) *quant.Weight
}

// speedFormats returns the formats TestQMatMulSpeed times: INT4 g128 and
// FP4 g32, or those named in MARLIN_QMM_FORMATS (int4-g128, fp4-g32, bf16,
// int8-g128, fp8, mxfp4, nvfp4).
func speedFormats() []speedFormat {
	all := []speedFormat{
		{"int4-g128", gptqWeight(4, 128, false, false, 1)},
		{"fp4-g32", fp4Weight(32)},
		{"bf16", denseWeight(dtype.BF16)},
		{"int8-g128", gptqWeight(8, 128, false, false, 1)},
		{"fp8", fp8Weight},
		{"mxfp4", mxfp4Weight},
		{"nvfp4", nvfp4Weight},
	}
	names := os.Getenv("MARLIN_QMM_FORMATS")
	if names == "" {
		return all[:2]
	}
	want := strings.Split(names, ",")
	var fs []speedFormat
	for _, f := range all {
		if slices.Contains(want, f.name) {
			fs = append(fs, f)
		}
	}
	return fs
}

// TestQMatMulSpeed times the decode kernels on the Llama-3-8B projection
// shapes (K×N = 4096×14336, 14336×4096, 8192×28672, 28672×8192; set
// MARLIN_QMM_SHAPES=K×N,... to change) at M = 1, 4, 16, device time from
// CUDA events, with the weights rotated among copies that together exceed
// the L2 cache, and a device-to-device copy measured in the same run. It
// prints a table "qmm <format> <K> <N> <M> <µs> <GB/s>" that
// scripts/device/perf_table.py joins with torch's times; no assertion.
func TestQMatMulSpeed(t *testing.T) {
	b := gpu(t)
	if testing.Short() {
		t.Skip("short")
	}
	shapes := speedShapes()
	// device-to-device copy bandwidth (bytes read + written)
	{
		const n = 1 << 28 // 1 GiB
		src, dst := b.NewTensor(1, n/4), b.NewTensor(1, n/4)
		mustSync(t, b)
		start, stop := b.newEvent(), b.newEvent()
		copyOnce := func() {
			b.enter()
			b.checkCall(call(b.d.cuMemcpyDtoDAsync, uintptr(b.tensor(dst).ptr()), uintptr(b.tensor(src).ptr()), n, b.stream), "cuMemcpyDtoDAsync")
			b.leave()
		}
		copyOnce()
		start.record()
		for range 10 {
			copyOnce()
		}
		stop.record()
		d := stop.since(start) / 10
		fmt.Printf("d2dcopy %.1f GB/s\n", 2*float64(n)/d.Seconds()/1e9)
		start.destroy()
		stop.destroy()
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, sh := range shapes {
		K, N := sh[0], sh[1]
		for _, f := range speedFormats() {
			w := f.make(rng, N, K)
			ms := loadCopies(t, b, w)
			// the decode products' work split, stripes or tile clusters
			// (the packed formats' kernels have a tile-cluster form)
			m := ms[0].(*matrix)
			if fk := b.fastKernel(m, 1); b.cc >= 90 && b.k.qmvTC[fk] != 0 {
				ft := b.k.qmvTC[fk]
				ntiles, spt := (m.rows+63)/64, m.cols/32
				fmt.Printf("tcl %s %d %d: %d tiles of %d steps, %d stripe warps; clusters resident at C = 1, 2, 4, 8: %d %d %d %d; chosen C = %d at M = 1, %d at M = 16\n",
					f.name, K, N, ntiles, spt, qmvWarps*b.stripeBlocks(fk, ntiles*spt), b.residentClusters(ft, 128, 1), b.residentClusters(ft, 128, 2),
					b.residentClusters(ft, 128, 4), b.residentClusters(ft, 128, 8), b.tileClusters(ft, fk, m, 1), b.tileClusters(ft, fk, m, 16))
			}
			for _, M := range speedRows() {
				if b.wgGemm(m, M) { // wg_qgemm's form, split and sum, and the residencies they came from
					i := wgFormOf(M, N, K)
					wf, wk := wgForms[i], packedKernel(b.k.wgQgemm[i][:], m)
					tiles, spt := (N+128*wf.ct-1)/(128*wf.ct)*((M+wf.bt-1)/wf.bt), K/32
					S, cl := b.wgSplit(wk, tiles, spt)
					res := make([]int, 9)
					for C := 2; C <= 8; C++ {
						res[C] = b.residentClusters(wk, 256, C)
					}
					fmt.Printf("wgsplit %s %d %d %d: form %s, %d tiles of %d steps, split %d, cluster %v; %d blocks a multiprocessor, clusters resident at C = 2 … 8: %v\n",
						f.name, K, N, M, wf.name, tiles, spt, S, cl, b.residentBlocks(wk, 256), res[2:])
				}
				x, y := b.NewTensor(M, K), b.NewTensor(M, N)
				b.Write(x, randn(rng, M*K, 1))
				b.SetGraphs(false)
				timed, done := matmulTimer(b, y, x, ms)
				one := timed(len(ms)) // warm-up, and the size of a repeat
				reps := max(3, min(20*len(ms), int(50*time.Millisecond/max(one, time.Microsecond))))
				// each call on its own (no programmatic dependent launch),
				// then with it: consecutive calls overlap their prologues
				pdl := b.pdlOn
				b.pdlOn = false
				d := timed(reps)
				// then with it, where the driver has it (off by default)
				b.pdlOn = b.cc >= 90 && b.d.cuLaunchKernelEx != 0
				if b.pdlOn && M <= 16 {
					fmt.Printf("qmmpdl %s %d %d %d %.2f\n", f.name, K, N, M, float64(timed(reps).Nanoseconds())/1e3)
				}
				b.pdlOn = pdl
				b.SetGraphs(true)
				done()
				mustSync(t, b)
				if M == gemmMinRows && K == shapes[0][0] && N == shapes[0][1] {
					if b.blas != nil {
						fmt.Printf("M >= %d: cuBLAS from %s\n", gemmMinRows, b.blas.path)
					} else {
						fmt.Printf("M >= %d: no cuBLAS (%v), tile kernels\n", gemmMinRows, b.blasErr)
					}
				}
				fmt.Printf("qmm %s %d %d %d %.2f %.1f\n", f.name, K, N, M, float64(d.Nanoseconds())/1e3, float64(ms[0].Bytes())/d.Seconds()/1e9)
			}
		}
	}
}

func time1(n int) time.Duration { return time.Duration(n) }
