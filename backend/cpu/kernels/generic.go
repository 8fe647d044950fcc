package kernels

import (
	"math"

	"github.com/marlin-llm/marlin/dtype"
)

// Portable implementations. They are the only path on CPUs without
// AVX2/FMA/F16C and on other architectures, and the reference the SIMD
// path is compared with in the tests. They use four independent float32
// accumulators per dot product (which both helps the compiler's scheduling
// and keeps the rounding error close to that of the 8-lane SIMD sums).

// dotGeneric returns Σ a[i]·b[i]; len(b) ≥ len(a).
func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGeneric(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func matmulF32Generic(dst []float32, ldd int, x []float32, M, K int, w []float32, n0, n1 int) {
	for n := n0; n < n1; n++ {
		wr := w[n*K : n*K+K]
		for m := 0; m < M; m++ {
			dst[m*ldd+n] = dotGeneric(x[m*K:m*K+K], wr)
		}
	}
}

// genericChunk is the number of weights converted at a time into a stack
// buffer by matmul16Generic, so each weight is converted once per call and
// reused for all M rows of x.
const genericChunk = 256

func matmul16Generic(kind wkind, dst []float32, ldd int, x []float32, M, K int, w []uint16, n0, n1 int) {
	var buf [genericChunk]float32
	for n := n0; n < n1; n++ {
		wr := w[n*K : n*K+K]
		for k0 := 0; k0 < K; k0 += genericChunk {
			kb := min(genericChunk, K-k0)
			cv := buf[:kb]
			if kind == kF16 {
				for i := range cv {
					cv[i] = dtype.F16ToF32(wr[k0+i])
				}
			} else {
				for i := range cv {
					cv[i] = math.Float32frombits(uint32(wr[k0+i]) << 16) // = dtype.BF16ToF32
				}
			}
			for m := 0; m < M; m++ {
				s := dotGeneric(x[m*K+k0:m*K+k0+kb], cv)
				if k0 == 0 {
					dst[m*ldd+n] = s
				} else {
					dst[m*ldd+n] += s
				}
			}
		}
	}
}
