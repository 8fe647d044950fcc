package qkernels

import (
	"math"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/marlin-llm/marlin/quant"
)

// TestNoAllocs checks that MatMul does not allocate in steady state.
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	rng := rand.New(rand.NewSource(11))
	for _, w := range []*quant.Weight{
		randomWeight(t, rng, quant.GPTQ, 96, 256, 4, 32, 1, false, false, false),
		randomWeight(t, rng, quant.GPTQ, 96, 256, 3, 64, 1, false, true, false),
		randomWeight(t, rng, quant.NVFP4, 96, 256, 4, 16, 0, true, false, false),
		randomWeight(t, rng, quant.FP8, 96, 200, 8, 200, 0, true, false, false),
	} {
		x := randX(rng, 5*w.In)
		dst := make([]float32, 5*w.Out)
		MatMul(dst, w.Out, x, 5, w, 3, 90) // warm the pool
		if a := testing.AllocsPerRun(20, func() { MatMul(dst, w.Out, x, 5, w, 3, 90) }); a > 0 {
			t.Errorf("%v: %.1f allocations per call", w, a)
		}
	}
}

// TestConcurrent runs disjoint column ranges from several goroutines into
// one dst (run with -race to check for data races).
func TestConcurrent(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	w := randomWeight(t, rng, quant.GPTQ, 203, 256, 4, 32, 1, false, false, false)
	x := randX(rng, 3*w.In)
	want := make([]float32, 3*w.Out)
	MatMul(want, w.Out, x, 3, w, 0, w.Out)
	got := make([]float32, 3*w.Out)
	var wg sync.WaitGroup
	cuts := []int{0, 13, 64, 101, 160, 203}
	for i := 0; i+1 < len(cuts); i++ {
		wg.Add(1)
		go func(a, b int) {
			defer wg.Done()
			for r := 0; r < 20; r++ {
				MatMul(got, w.Out, x, 3, w, a, b)
			}
		}(cuts[i], cuts[i+1])
	}
	wg.Wait()
	for i := range want {
		// columns computed by different blocking may round differently
		if d := got[i] - want[i]; d > 1e-4 || d < -1e-4 {
			t.Fatalf("element %d: %g vs %g", i, got[i], want[i])
		}
	}
}

func TestMatMulArgs(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	w := randomWeight(t, rng, quant.GPTQ, 16, 64, 4, 32, 1, false, false, false)
	x := randX(rng, 2*64)
	for name, f := range map[string]func(){
		"column range": func() { MatMul(make([]float32, 64), 16, x, 2, w, 0, 17) },
		"len(x)":       func() { MatMul(make([]float32, 64), 16, x[:100], 2, w, 0, 16) },
		"len(dst)":     func() { MatMul(make([]float32, 20), 16, x, 2, w, 0, 16) },
		"ldd":          func() { MatMul(make([]float32, 64), 8, x, 2, w, 0, 16) },
	} {
		func() {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, name) {
					t.Errorf("%s: panic %v", name, r)
				}
			}()
			f()
		}()
	}
	MatMul(nil, 0, nil, 0, w, 0, 16) // M = 0: nothing to do
}

// TestBenchWeights checks that the benchmark's synthetic symmetric weights
// really have uniform zero points (so the uniform path is what is timed).
func TestBenchWeights(t *testing.T) {
	rng := rand.New(rand.NewSource(14))
	for _, bits := range []int{2, 3, 4, 8} {
		w := fastRandomGPTQ(rng, 96, 256, bits, 32, true)
		c, err := w.Unpack()
		if err != nil {
			t.Fatal(err)
		}
		for _, z := range c.Zeros {
			if z != 1<<uint(bits-1) {
				t.Fatalf("bits %d: zero %d", bits, z)
			}
		}
		x := randX(rng, 2*256)
		checkMatMul(t, w, x, 2, 0, 96, "bench-sym")
	}
}

// TestDequantizeRow checks DequantizeRow (from the packed copy where the
// kernels have one) against quant's DequantizeRow, bit for bit, for every
// row of GPTQ weights of every bit width, group size and zero-point kind,
// with columns past the last multiple of 8.
func TestDequantizeRow(t *testing.T) {
	rng := rand.New(rand.NewSource(13))
	const in, out = 384, 403
	for _, bits := range []int{2, 3, 4, 8} {
		for _, group := range []int{32, 64, 128, in} {
			for _, z := range []struct{ sym, nilZeros bool }{{true, false}, {false, false}, {true, true}} {
				w := randomWeight(t, rng, quant.GPTQ, out, in, bits, group, 1, z.sym, false, z.nilZeros)
				got, want := make([]float32, in), make([]float32, in)
				for n := range out {
					DequantizeRow(got, w, n)
					w.DequantizeRow(want, n)
					for k := range want {
						if math.Float32bits(got[k]) != math.Float32bits(want[k]) {
							t.Fatalf("%d-bit g%d sym %v nil zeros %v: row %d, input %d: %g, quant's %g", bits, group, z.sym, z.nilZeros, n, k, got[k], want[k])
						}
					}
				}
			}
		}
	}
}
