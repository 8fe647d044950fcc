//go:build amd64 && !purego

package qkernels

import (
	"math"
	"math/rand"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// TestPackedLayout checks that the AVX-512 GPTQ kernels give bitwise the
// same results on the packed copy as on the checkpoint layout, for every
// bit width, zero-point kind, column range and row count.
func TestPackedLayout(t *testing.T) {
	if !useAVX512 {
		t.Skip("no AVX-512")
	}
	defer func() { gptqUsePack = true }()
	rng := rand.New(rand.NewSource(5))
	for _, c := range kernelCases() {
		if c.f != quant.GPTQ || c.act || c.group%32 != 0 || 256%max(c.group, 1) != 0 {
			continue
		}
		in := 256
		group := c.group
		if group == 0 {
			group = in
		}
		const out = 403
		w := randomWeight(t, rng, c.f, out, in, c.bits, group, c.off, c.sym, c.act, c.nilZeros)
		x := randX(rng, 16*in)
		for _, M := range []int{1, 2, 3, 5, 8, 16} {
			for _, r := range [][2]int{{0, out}, {3, 200}, {64, 136}, {200, out}} {
				var got [2][]float32
				for i, pack := range []bool{true, false} {
					gptqUsePack = pack
					got[i] = make([]float32, M*out)
					MatMul(got[i], out, x, M, w, r[0], r[1])
				}
				for i := range got[0] {
					if math.Float32bits(got[0][i]) != math.Float32bits(got[1][i]) {
						t.Fatalf("%v M=%d [%d,%d): element %d: packed %g, checkpoint layout %g", c, M, r[0], r[1], i, got[0][i], got[1][i])
					}
				}
			}
		}
	}
}

// TestPackedConcurrent makes the packed copy of fresh weights from several
// goroutines at once (as the CPU backend's workers do on a weight's first
// MatMul) and checks every result against a later serial call.
func TestPackedConcurrent(t *testing.T) {
	if !useAVX512 {
		t.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewSource(6))
	const in, out, parts = 256, 512, 4
	for i := 0; i < 8; i++ {
		w := randomWeight(t, rng, quant.GPTQ, out, in, 4, 32, 1, i%2 == 0, false, false)
		x := randX(rng, in)
		got := make([]float32, out)
		done := make(chan struct{})
		for p := 0; p < parts; p++ {
			go func() {
				MatMul(got, out, x, 1, w, p*out/parts, (p+1)*out/parts)
				done <- struct{}{}
			}()
		}
		for range parts {
			<-done
		}
		want := make([]float32, out)
		MatMul(want, out, x, 1, w, 0, out)
		for n := range want {
			if math.Float32bits(got[n]) != math.Float32bits(want[n]) {
				t.Fatalf("weight %d col %d: concurrent first call %g, later call %g", i, n, got[n], want[n])
			}
		}
	}
}

// TestDirectForm checks that the direct form of the VNNI kernels
// (gptqDKernels, gptqDZKernels) gives bitwise the results of the
// sub-group form, for INT4 (zero points uniform, absent or of their own;
// groups of 32, 64, 128 and per channel), INT8 (g128 uniform, g32 zero
// points of its own), INT2 g64 and INT3 g32/g128 (uniform), FP4 (groups of 32 and 128) and MXFP4, every row count and column ranges that start and end
// inside column tiles; one-row products of an even and of an odd number
// of whole tiles take the two-stream kernels (gptqTwoStreams) for pairs of
// tiles and the one-stream direct form for the odd one.
func TestDirectForm(t *testing.T) {
	if !useAVX512 || !useVNNI {
		t.Skip("no AVX-512 VNNI")
	}
	defer func() { gptqUseDirect = true }()
	rng := rand.New(rand.NewSource(7))
	const in, out = 384, 403
	ws := []*quant.Weight{
		randomWeight(t, rng, quant.GPTQ, out, in, 4, 32, 1, true, false, false),
		randomWeight(t, rng, quant.GPTQ, out, in, 4, 32, 1, true, false, true),
		randomWeight(t, rng, quant.GPTQ, out, in, 4, 32, 1, false, false, false),
		randomWeight(t, rng, quant.GPTQ, out, in, 4, 128, 1, true, false, false),
		randomWeight(t, rng, quant.GPTQ, out, in, 4, 64, 1, false, false, false),
		randomWeight(t, rng, quant.GPTQ, out, in, 4, in, 1, true, false, true),
		randomWeight(t, rng, quant.GPTQ, out, in, 8, 128, 1, true, false, false),
		randomWeight(t, rng, quant.GPTQ, out, in, 2, 64, 1, true, false, false),
		randomWeight(t, rng, quant.GPTQ, out, in, 3, 128, 1, true, false, true),
		randomWeight(t, rng, quant.GPTQ, out, in, 3, 32, 1, true, false, false),
		randomWeight(t, rng, quant.GPTQ, out, in, 8, 32, 1, false, false, false),
		randomWeight(t, rng, quant.FP4, out, in, 4, 32, 0, true, false, false),
		randomWeight(t, rng, quant.FP4, out, in, 4, 128, 0, true, false, false),
		randomWeight(t, rng, quant.MXFP4, out, in, 4, 32, 0, true, false, false),
	}
	x := randX(rng, 16*in)
	for _, w := range ws {
		for _, M := range []int{1, 2, 3, 4, 5, 8, 16} {
			for _, r := range [][2]int{{0, out}, {8, 200}, {64, 136}, {200, out}} {
				var got [2][]float32
				for i, direct := range []bool{true, false} {
					gptqUseDirect = direct
					got[i] = make([]float32, M*out)
					MatMul(got[i], out, x, M, w, r[0], r[1])
				}
				for i := range got[0] {
					if math.Float32bits(got[0][i]) != math.Float32bits(got[1][i]) {
						t.Fatalf("%v %d-bit g%d M=%d [%d,%d): element %d: direct %g, sub-group form %g", w.Format, w.Bits, w.Group, M, r[0], r[1], i, got[0][i], got[1][i])
					}
				}
			}
		}
	}
}
