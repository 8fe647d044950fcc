//go:build amd64 && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// TestBlockEdges shrinks the blocking parameters of the SIMD path so that
// small problems cross every block edge: several K blocks with a K tail in
// the last one, several weight panels with leftover groups of 3 and 4,
// leftover rows of x, and several N blocks in the small-M path, on the
// AVX2 and on the AVX-512 kernels.
func TestBlockEdges(t *testing.T) {
	if !hasSIMD {
		t.Skip("no SIMD path on this machine")
	}
	savedK, savedN, savedG, savedM, saved512 := blockK, blockN, gemvBlockBytes, prefillMinM, useAVX512
	defer func() {
		blockK, blockN, gemvBlockBytes, prefillMinM, useAVX512 = savedK, savedN, savedG, savedM, saved512
	}()
	for _, z := range []bool{false, true} {
		if z && !hasAVX512 {
			continue
		}
		useAVX512 = z
		testBlockEdges(t)
	}
}

func testBlockEdges(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, bk := range []int{8, 16, 40} {
		for _, bn := range []int{12, 24} {
			blockK, blockN, gemvBlockBytes = bk, bn, 8*bk
			for _, minM := range []int{1, 4} {
				prefillMinM = minM
				for _, typ := range allTypes {
					for _, M := range []int{1, 2, 3, 4, 5, 6, 7, 9} {
						for _, K := range []int{7, 8, 9, 23, 41, 100} {
							N := 31 + r.IntN(30)
							p := newProblem(r, typ, M, K, N)
							p.check(t, N+1, 0, N)
							p.check(t, N, 2, N-1)
						}
					}
				}
			}
		}
	}
}

func init() {
	// KBENCH_AVX2=1 runs the benchmarks (and tests) with the AVX2 kernels.
	if os.Getenv("KBENCH_AVX2") != "" {
		useAVX512 = false
	}
}

// TestPanelGEMM checks the exported prefill kernel against the float64
// reference on panels packed in Go: odd k (partial last step), n not a
// multiple of 4 (padded group), M with leftover rows, accum.
func TestPanelGEMM(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512")
	}
	r := rand.New(rand.NewPCG(17, 18))
	for _, k := range []int{1, 15, 16, 64, 100, 1024} {
		for _, n := range []int{1, 4, 7, 37} {
			for _, M := range []int{1, 2, 3, 4, 7, 64} {
				p := newProblem(r, tF32, M, k, n)
				steps := (k + 15) / 16
				ng := (n + 3) / 4
				panel := make([]float32, ng*64*steps)
				for j := 0; j < n; j++ {
					g, c := j/4, j%4
					for i := 0; i < k; i++ {
						panel[(g*steps+i/16)*64+c*16+i%16] = p.w32[j*k+i]
					}
				}
				for _, accum := range []bool{false, true} {
					ldd := n + 2
					dst := poisoned((M-1)*ldd + n + 3)
					base := make([]float32, len(dst))
					for m := 0; m < M; m++ {
						for j := 0; j < n; j++ {
							base[m*ldd+j] = float32(r.NormFloat64())
							if accum {
								dst[m*ldd+j] = base[m*ldd+j]
							}
						}
					}
					PanelGEMM(dst, ldd, p.x, k, M, k, panel, n, accum)
					for i, v := range dst {
						m, j := i/ldd, i%ldd
						if m >= M || j >= n {
							if math.Float32bits(v) != poison {
								t.Fatalf("k=%d n=%d M=%d: wrote dst[%d]", k, n, M, i)
							}
							continue
						}
						ref := p.ref[m*n+j]
						if accum {
							ref += float64(base[i])
						}
						if err := math.Abs(float64(v) - ref); !(err <= relTol*(p.abs[m*n+j]+math.Abs(float64(base[i])))) {
							t.Fatalf("k=%d n=%d M=%d accum=%v: dst[%d,%d] = %g, want %g", k, n, M, accum, m, j, v, ref)
						}
					}
				}
			}
		}
	}
}
