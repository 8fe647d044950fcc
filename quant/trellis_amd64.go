//go:build amd64 && !purego

package quant

import "golang.org/x/sys/cpu"

// stepAVX2 is stepGeneric in AVX2 assembly, 8 nodes at a time (the same
// float32 operations in the same order, so the results are identical).
//
//go:noescape
func stepAVX2(next *float32, bp *uint8, prev *float32, val *float32, x float32, K int)

// stepAVX512 is the same with 16 nodes per instruction.
//
//go:noescape
func stepAVX512(next *float32, bp *uint8, prev *float32, val *float32, x float32, K int)

func stepSIMD(next []float32, bp []uint8, prev, val []float32, x float32, K int) {
	ne := 1 << uint(16-K)
	_, _, _, _ = next[ne-1], bp[ne-1], prev[ne-1], val[1<<16-1]
	stepAVX2(&next[0], &bp[0], &prev[0], &val[0], x, K)
}

func stepSIMD512(next []float32, bp []uint8, prev, val []float32, x float32, K int) {
	ne := 1 << uint(16-K)
	_, _, _, _ = next[ne-1], bp[ne-1], prev[ne-1], val[1<<16-1]
	stepAVX512(&next[0], &bp[0], &prev[0], &val[0], x, K)
}

func init() {
	if cpu.X86.HasAVX2 {
		stepKernels["avx2"] = stepSIMD
		step, StepKernel = stepSIMD, "avx2"
	}
	if cpu.X86.HasAVX512F {
		stepKernels["avx512"] = stepSIMD512
		step, StepKernel = stepSIMD512, "avx512"
	}
}
