//go:build linux && !nocuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/backend/sampling"
)

// TestSample checks the device draw (sample_rows) against the CPU
// backend's, which is package sampling's definition, on random logits:
// vocabularies of 1000, 50257 and 128256 (chunks that do not divide
// evenly), rows of every filter combination with fresh uniform numbers,
// and rows with NaN, −Inf and +Inf logits or none finite. Every draw must
// be the same token, except where U·Σp lies within 1e-5·Σp of the
// boundary between the two tokens drawn: the two sides compute each
// probability with a different exp (a few ulps apart) and sum in another
// order, which moves a boundary by ~1e-7·Σp·√n at most (random logits cut
// filters far from such ties).
func TestSample(t *testing.T) {
	g := gpu(t)
	c := cpu.New(2)
	rng := rand.New(rand.NewPCG(61, 62))
	params := []sampling.Params{
		{},
		{Temperature: 1},
		{Temperature: 0.7, TopK: 40},
		{Temperature: 1.2, TopP: 0.9},
		{Temperature: 1, MinP: 0.05},
		{Temperature: 0.8, TopK: 200, TopP: 0.95, MinP: 0.01},
		{Temperature: 1, TopK: 1},
		{Temperature: 0.5, TopP: 0.3},
		{Temperature: 1e-30},
	}
	for _, V := range []int{1000, 50257, 128256} {
		for rep := range 4 {
			M := len(params) + 4
			logits := make([]float32, M*V)
			for i := range logits {
				logits[i] = float32(rng.NormFloat64() * 3)
			}
			p := make([]sampling.Params, M)
			for i := range p {
				p[i] = params[i%len(params)]
				if p[i].Temperature == 0 && i >= len(params) {
					p[i].Temperature = 1
				}
				p[i].U = rng.Float64()
			}
			// the special rows: NaN and −Inf mixed in; a +Inf; nothing finite
			row := func(i int) []float32 { return logits[len(params)*V+i*V:][:V] }
			for j := 0; j < V; j += 7 {
				row(0)[j] = float32(math.NaN())
				row(0)[j+1] = float32(math.Inf(-1))
			}
			row(1)[rng.IntN(V)] = float32(math.Inf(1))
			for j := range V {
				row(2)[j] = float32(math.Inf(-1))
				if j%2 == 0 {
					row(2)[j] = float32(math.NaN())
				}
			}
			p[len(params)+3].TopP = 0.8
			x := tensors(t, g, c, M, V, logits)
			got, want := make([]int32, M), make([]int32, M)
			if err := g.Sample(got, x.g, p); err != nil {
				t.Fatal(err)
			}
			if err := c.Sample(want, x.c, p); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if got[i] != want[i] && !nearBoundary(logits[i*V:(i+1)*V], p[i], got[i], want[i]) {
					t.Errorf("%s: row %d (%+v): device drew %d, CPU %d", fmt.Sprintf("V%d rep %d", V, rep), i, p[i], got[i], want[i])
				}
			}
		}
	}
	if err := g.Sample(make([]int32, 1), tensors(t, g, c, 2, 10, nil).g, make([]sampling.Params, 2)); err == nil {
		t.Error("Sample into too few ids: no error")
	}
	mustSync(t, g)
}

// nearBoundary reports whether two different draws a and b from logits
// with p are both kept tokens adjacent in id order (no kept token between
// them) whose boundary lies within 1e-5 of U·Σp (sampling's probabilities).
func nearBoundary(logits []float32, p sampling.Params, a, b int32) bool {
	if p.Greedy() || a < 0 || b < 0 {
		return false
	}
	var sc sampling.Scratch
	pr, ok := sc.Probs(logits, p)
	if !ok {
		return false
	}
	lo, hi := min(a, b), max(a, b)
	if pr[lo] <= 0 || pr[hi] <= 0 {
		return false
	}
	var total, upto float64
	for i, x := range pr {
		total += float64(x)
		if int32(i) <= lo {
			upto += float64(x)
		}
		if int32(i) > lo && int32(i) < hi && x > 0 {
			return false
		}
	}
	return math.Abs(upto-p.U*total) <= 1e-5*total
}
