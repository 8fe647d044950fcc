package sampling

import (
	"math"
	"testing"
)

// TestDraw checks the draw's definition on small rows: U picks tokens by
// the running sum of the kept probabilities in id order; greedy, +Inf,
// nothing finite and NaN behave as documented; filters drop what they say.
func TestDraw(t *testing.T) {
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	// probabilities of [0, ln 2, ln 3, −Inf] at T = 1: 1/6, 2/6, 3/6, 0
	l := []float32{0, float32(math.Log(2)), float32(math.Log(3)), -inf}
	var s Scratch
	for _, c := range []struct {
		logits []float32
		p      Params
		want   int32
	}{
		{l, Params{}, 2},
		{l, Params{Temperature: 1, U: 0}, 0},
		{l, Params{Temperature: 1, U: 0.16}, 0},
		{l, Params{Temperature: 1, U: 0.17}, 1},
		{l, Params{Temperature: 1, U: 0.49}, 1},
		{l, Params{Temperature: 1, U: 0.51}, 2},
		{l, Params{Temperature: 1, U: 0.9999}, 2},
		{l, Params{Temperature: 1, TopK: 2, U: 0.39}, 1}, // kept 2/5, 3/5
		{l, Params{Temperature: 1, TopK: 2, U: 0.41}, 2},
		{l, Params{Temperature: 1, TopP: 0.45, U: 0}, 2},   // 3/6 reaches 0.45 alone
		{l, Params{Temperature: 1, MinP: 0.5, U: 0.3}, 1},  // kept 2/5, 3/5
		{l, Params{Temperature: 1, MinP: 0.7, U: 0.01}, 2}, // only 3/6 ≥ 0.7 · 3/6
		{[]float32{1, inf, 2, inf}, Params{Temperature: 1, U: 0.9}, 1},
		{[]float32{-inf, nan, -inf}, Params{Temperature: 1, U: 0.5}, 0},
		{[]float32{nan, 5, 4}, Params{Temperature: 1e-30, U: 0.5}, 1},
		{[]float32{nan, 0, 0}, Params{Temperature: 1, U: 0.99}, 2},
	} {
		if got := s.Draw(c.logits, c.p); got != c.want {
			t.Errorf("Draw(%v, %+v) = %d, want %d", c.logits, c.p, got, c.want)
		}
	}
	if got := Largest([]float32{3, 1, 3, 2}, 3); len(got) != 3 || got[0].ID != 0 || got[1].ID != 2 || got[2].ID != 3 {
		t.Errorf("Largest = %v", got)
	}
}
