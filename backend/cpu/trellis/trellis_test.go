package trellis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// randomEXL3 returns an EXL3 weight with random trellis bits and random
// fp16 sign/scale vectors.
func randomEXL3(rng *rand.Rand, out, in, K int, cb quant.Codebook) *quant.Weight {
	w := &quant.Weight{Name: "w", Format: quant.EXL3, Out: out, In: in, Bits: K, Codebook: cb}
	pi, po := w.PaddedDims()
	w.Data = make([]byte, pi/16*po/16*32*K)
	for i := range w.Data {
		w.Data[i] = byte(rng.Uint32())
	}
	vec := func(n int, scale float64) []byte {
		b := make([]byte, 2*n)
		for i := 0; i < n; i++ {
			h := dtype.F32ToF16(float32(rng.NormFloat64() * scale))
			b[2*i], b[2*i+1] = byte(h), byte(h>>8)
		}
		return b
	}
	w.Scales, w.Zeros = vec(pi, 0.02), vec(po, 1)
	if err := w.Validate(); err != nil {
		panic(err)
	}
	return w
}

func reference(dst []float64, x []float32, M int, w *quant.Weight) {
	row := make([]float32, w.In)
	for n := 0; n < w.Out; n++ {
		w.DequantizeRow(row, n)
		for m := 0; m < M; m++ {
			var s float64
			for k, v := range row {
				s += float64(v) * float64(x[m*w.In+k])
			}
			dst[m*w.Out+n] = s
		}
	}
}

// TestDecodeTile: the streaming decoder equals quant's (UnpackTile + the
// codebook table) on random tiles for every K.
func TestDecodeTile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for K := 1; K <= quant.MaxTrellisBits; K++ {
		src := make([]byte, 32*K)
		for trial := 0; trial < 10; trial++ {
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			var st [quant.TileLen]uint16
			quant.UnpackTile(&st, src, K)
			var got [quant.TileLen]float32
			lut := quant.CodebookMUL1.Table()
			DecodeTile(&got, src, K, lut)
			for e, s := range st {
				if got[e] != lut[s] {
					t.Fatalf("K=%d: position %d: %v, want %v", K, e, got[e], lut[s])
				}
			}
		}
	}
}

// TestMatMul compares MatMul with DequantizeRow + a float64 dot product on
// random weights of odd (padded) shapes, every K, partial output ranges
// and several row counts. Tolerance: 2e-5 of Σ|w·x| (float32 sums and
// rotations).
func TestMatMul(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		out, in, K, M, n0, n1 int
		cb                    quant.Codebook
	}{
		{128, 128, 2, 1, 0, 128, quant.Codebook3INST},
		{200, 96, 3, 3, 0, 200, quant.CodebookMCG},
		{256, 256, 4, 17, 64, 250, quant.CodebookMUL1},
		{64, 384, 1, 2, 5, 60, quant.Codebook3INST},
		{384, 128, 5, 1, 130, 384, quant.Codebook3INST},
		{96, 144, 6, 4, 0, 96, quant.CodebookMUL1},
		{128, 128, 7, 1, 0, 128, quant.CodebookMCG},
		{130, 260, 8, 5, 100, 130, quant.Codebook3INST},
	}
	for _, c := range cases {
		w := randomEXL3(rng, c.out, c.in, c.K, c.cb)
		x := make([]float32, c.M*c.in)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		want := make([]float64, c.M*c.out)
		reference(want, x, c.M, w)
		ldd := c.n1 + 3
		dst := make([]float32, c.M*ldd)
		for i := range dst {
			dst[i] = 12345
		}
		MatMul(dst, ldd, x, c.M, w, c.n0, c.n1)
		row := make([]float32, c.in)
		for m := 0; m < c.M; m++ {
			for n := 0; n < ldd; n++ {
				got := dst[m*ldd+n]
				if n < c.n0 || n >= c.n1 {
					if got != 12345 {
						t.Fatalf("%+v: wrote outside [n0, n1) at (%d, %d)", c, m, n)
					}
					continue
				}
				w.DequantizeRow(row, n)
				var mag float64
				for k, v := range row {
					mag += math.Abs(float64(v) * float64(x[m*c.in+k]))
				}
				if d := math.Abs(float64(got) - want[m*c.out+n]); d > 2e-5*mag+1e-30 {
					t.Fatalf("%+v: (%d, %d) = %v, want %v (|w·x| %g)", c, m, n, got, want[m*c.out+n], mag)
				}
			}
		}
	}
}

func BenchmarkMatMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, M := range []int{1, 64} {
		w := randomEXL3(rng, 1024, 1024, 3, quant.Codebook3INST)
		x := make([]float32, M*1024)
		dst := make([]float32, M*1024)
		b.Run(map[int]string{1: "M1", 64: "M64"}[M], func(b *testing.B) {
			b.SetBytes(int64(len(w.Data)))
			for range b.N {
				MatMul(dst, 1024, x, M, w, 0, 1024)
			}
			b.ReportMetric(float64(1024*1024)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gweights/s")
		})
	}
	// one row against weights that stream from memory: three 4-bit
	// 8192×2048 matrices (8 MB each, 24 MB with the 1B shape's gate
	// proportions) used in turn, beyond the last-level cache with the
	// rest of the process
	const N, K = 8192, 2048
	var ws []*quant.Weight
	for range 6 {
		ws = append(ws, randomEXL3(rng, N, K, 4, quant.Codebook3INST))
	}
	x := make([]float32, K)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	dst := make([]float32, N)
	b.Run("M1-stream", func(b *testing.B) {
		b.SetBytes(int64(len(ws[0].Data)))
		i := 0
		for range b.N {
			MatMul(dst, N, x, 1, ws[i%len(ws)], 0, N)
			i++
		}
		b.ReportMetric(float64(N*K)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gweights/s")
	})
}

// TestMatVecSIMD compares the single-row product with the AVX-512 kernel
// and with the Go loop, for every K it handles and every codebook, and
// both with the float64 reference (tolerance 2e-5 of Σ|w·x|).
func TestMatVecSIMD(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for K := 1; K <= 5; K++ {
		for cb := quant.Codebook3INST; cb <= quant.CodebookMUL1; cb++ {
			w := randomEXL3(rng, 256, 200, K, cb)
			x := make([]float32, 200)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			got := [2][]float32{make([]float32, 256), make([]float32, 256)}
			for i, simd := range []bool{true, false} {
				useSIMD = simd
				MatMul(got[i], 256, x, 1, w, 0, 256)
			}
			useSIMD = true
			for i := range got {
				checkReference(t, fmt.Sprintf("K=%d %v simd=%v", K, cb, i == 0), got[i], x, w)
			}
		}
	}
}

// TestMatVecAVX2 runs the single-row product on the AVX2 kernel (the
// AVX-512 one switched off) for every K it handles and every codebook:
// within 2e-5 of Σ|w·x| of the float64 reference, and, where the CPU has
// AVX-512, bit for bit the AVX-512 kernel's result (the same operations
// in the same order). Tiles down a column beyond one chunk (K' = 400
// inputs: 25 tile rows) and several tile columns.
func TestMatVecAVX2(t *testing.T) {
	if !hasAVX2 {
		t.Skip("no AVX2, FMA and F16C")
	}
	rng := rand.New(rand.NewPCG(9, 10))
	for K := 1; K <= 4; K++ {
		for cb := quant.Codebook3INST; cb <= quant.CodebookMUL1; cb++ {
			w := randomEXL3(rng, 256, 400, K, cb)
			x := make([]float32, 400)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			got := make([]float32, 256)
			useAVX512 = false
			MatMul(got, 256, x, 1, w, 0, 256)
			useAVX512 = true
			checkReference(t, fmt.Sprintf("K=%d %v", K, cb), got, x, w)
			if hasAVX512 {
				wide := make([]float32, 256)
				MatMul(wide, 256, x, 1, w, 0, 256)
				for n := range wide {
					if math.Float32bits(wide[n]) != math.Float32bits(got[n]) {
						t.Fatalf("K=%d %v: output %d = %v on AVX2, %v on AVX-512", K, cb, n, got[n], wide[n])
					}
				}
			}
		}
	}
}

// checkReference fails t where got, the single-row product of x and w,
// differs from the float64 reference by more than 2e-5 of Σ|w·x| (float32
// sums in another order).
func checkReference(t *testing.T, label string, got, x []float32, w *quant.Weight) {
	t.Helper()
	want := make([]float64, len(got))
	reference(want, x, 1, w)
	row := make([]float32, len(x))
	for n := range got {
		w.DequantizeRow(row, n)
		var mag float64
		for k, v := range row {
			mag += math.Abs(float64(v) * float64(x[k]))
		}
		if d := math.Abs(float64(got[n]) - want[n]); d > 2e-5*mag+1e-30 {
			t.Fatalf("%s: output %d = %v, want %v", label, n, got[n], want[n])
		}
	}
}

// TestAddColumns checks addColumns' closed form of the tile order against
// the column table derived from quant.TensorCoreOrder, on random sums.
func TestAddColumns(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var acc [quant.TileLen]float32
	var want [16]float64
	for e := range acc {
		acc[e] = float32(rng.NormFloat64())
		want[tileCol[e]] += float64(acc[e])
	}
	var got [16]float32
	addColumns(&got, &acc)
	for c := range got {
		if math.Abs(float64(got[c])-want[c]) > 1e-5 {
			t.Errorf("column %d: %g, want %g", c, got[c], want[c])
		}
	}
}
