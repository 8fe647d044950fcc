//go:build amd64 && !purego

package qkernels

import (
	"math/rand"
	"os"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// TestSIMDTaken makes sure the assembly (not the fallback) computes the
// aligned shapes, by calling the drivers directly.
func TestSIMDTaken(t *testing.T) {
	if !hasSIMD {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewSource(9))
	x := randX(rng, 4*256)
	dst := make([]float32, 4*64)
	for _, w := range []*quant.Weight{
		randomWeight(t, rng, quant.GPTQ, 64, 256, 4, 32, 1, false, false, false),
		randomWeight(t, rng, quant.GPTQ, 64, 256, 3, 128, 1, false, false, false),
		randomWeight(t, rng, quant.FP8, 64, 256, 8, 256, 0, true, false, false),
		randomWeight(t, rng, quant.NVFP4, 64, 256, 4, 16, 0, true, false, false),
		randomWeight(t, rng, quant.FP4, 64, 256, 4, 128, 0, true, false, false),
	} {
		if !Coverage(w) {
			t.Errorf("%v not covered", w)
		}
		sc := getScratch()
		var ok bool
		if w.Format == quant.GPTQ {
			ok = gptqSIMD(sc, dst, 64, x, 4, w, 0, 64)
		} else {
			ok = fpSIMD(sc, dst, 64, x, 4, w, 0, 64)
		}
		if !ok {
			t.Errorf("%v: assembly not taken", w)
		}
	}
}

func init() {
	// QBENCH_AVX2=1 runs the benchmarks (and tests) with the AVX2 kernels.
	if os.Getenv("QBENCH_AVX2") != "" {
		useAVX512 = false
	}
	// QBENCH_NOVNNI=1 runs them with the float AVX-512 4-bit GPTQ kernels.
	if os.Getenv("QBENCH_NOVNNI") != "" {
		useVNNI = false
	}
}

// TestMatMulNoVNNI runs the kernel tests and the batch-invariance test on
// the float AVX-512 4-bit GPTQ kernels, which AVX-512 CPUs without VNNI use
// (with VNNI the tests above run the integer ones).
func TestMatMulNoVNNI(t *testing.T) {
	if !hasVNNI {
		t.Skip("no AVX512_VNNI: the tests above already run the float kernels")
	}
	saved := useVNNI
	useVNNI = false
	defer func() { useVNNI = saved }()
	testKernels(t)
	TestBatchInvariance(t)
}

// TestMatMulAVX2 runs the kernel tests on the AVX2 kernels (the AVX-512
// ones switched off), which CPUs without AVX-512 use.
func TestMatMulAVX2(t *testing.T) {
	if !hasSIMD {
		t.Skip("no AVX2")
	}
	saved := useAVX512
	useAVX512 = false
	defer func() { useAVX512 = saved }()
	testKernels(t)
}
