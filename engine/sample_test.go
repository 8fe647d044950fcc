package engine

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refDist computes the distribution a Sampling draws from, plainly in
// float64: penalties, temperature, top-k, top-p, min-p, renormalise.
func refDist(p Sampling, logits []float32, prompt []int32, out map[int32]int) []float64 {
	l := make([]float64, len(logits))
	for i, v := range logits {
		l[i] = float64(v)
	}
	if rp := float64(p.RepetitionPenalty); rp != 0 && rp != 1 {
		seen := map[int32]bool{}
		for _, t := range prompt {
			seen[t] = true
		}
		for t := range out {
			seen[t] = true
		}
		for t := range seen {
			if l[t] > 0 {
				l[t] /= rp
			} else {
				l[t] *= rp
			}
		}
	}
	for t, n := range out {
		l[t] -= float64(p.PresencePenalty) + float64(p.FrequencyPenalty)*float64(n)
	}
	idx := make([]int, len(l))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return l[idx[a]] > l[idx[b]] })
	keep := len(idx)
	if p.TopK > 0 && p.TopK < keep {
		keep = p.TopK
	}
	pr := make([]float64, len(l))
	var sum float64
	for _, i := range idx[:keep] {
		pr[i] = math.Exp((l[i] - l[idx[0]]) / float64(p.Temperature))
		sum += pr[i]
	}
	if p.TopP > 0 && p.TopP < 1 {
		acc := 0.0
		for j, i := range idx[:keep] {
			acc += pr[i] / sum
			if acc >= float64(p.TopP) {
				keep = j + 1
				break
			}
		}
	}
	if p.MinP > 0 {
		top := pr[idx[0]]
		for j := 1; j < keep; j++ {
			if pr[idx[j]] < float64(p.MinP)*top {
				keep = j
				break
			}
		}
	}
	dist := make([]float64, len(l))
	sum = 0
	for _, i := range idx[:keep] {
		dist[i] = pr[i]
		sum += pr[i]
	}
	for i := range dist {
		dist[i] /= sum
	}
	return dist
}

// TestSamplerDistribution draws many tokens with each filter combination
// and compares the frequencies with the reference distribution: every
// token outside the reference's support must never appear, and the total
// variation distance must be within sampling noise (≤ 0.02 for 40,000 draws
// over at most a few dozen tokens).
func TestSamplerDistribution(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	logits := make([]float32, 50)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 2)
	}
	prompt := []int32{1, 2, 3, 7}
	out := map[int32]int{7: 2, 9: 1}
	cases := []Sampling{
		{Temperature: 1},
		{Temperature: 0.7, TopK: 5},
		{Temperature: 1.3, TopP: 0.8},
		{Temperature: 1, MinP: 0.1},
		{Temperature: 0.9, TopK: 20, TopP: 0.9, MinP: 0.05},
		{Temperature: 1, RepetitionPenalty: 1.3, PresencePenalty: 0.5, FrequencyPenalty: 0.3},
	}
	for ci, p := range cases {
		p.Seed, p.HasSeed = uint64(ci), true
		s := NewSampler(p, prompt)
		for id, n := range out {
			for range n {
				s.Accept(id)
			}
		}
		want := refDist(p, logits, prompt, out)
		counts := make([]float64, len(logits))
		const draws = 40000
		buf := make([]float32, len(logits))
		for range draws {
			copy(buf, logits)
			counts[s.Sample(buf)]++
		}
		var tv float64
		for i := range counts {
			if want[i] == 0 && counts[i] > 0 {
				t.Errorf("case %d: token %d drawn %v times outside the allowed set", ci, i, counts[i])
			}
			tv += math.Abs(counts[i]/draws-want[i]) / 2
		}
		if tv > 0.02 {
			t.Errorf("case %d (%+v): total variation %.3f from the reference", ci, p, tv)
		}
	}
}

// TestSamplerFilterSets checks the kept set of tokens on large
// vocabularies, where top-p has to widen its partial sort beyond the first
// 64 tokens: it must equal the reference's support exactly (the fixed
// seeds keep every cut far from a rounding tie).
func TestSamplerFilterSets(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for ci, p := range []Sampling{
		{Temperature: 1, TopP: 0.9},
		{Temperature: 0.5, TopP: 0.99},
		{Temperature: 2, TopP: 0.5, MinP: 0.2},
		{Temperature: 1, TopK: 1000, TopP: 0.95},
		{Temperature: 1, MinP: 0.3},
		{Temperature: 1, TopK: 300},
	} {
		logits := make([]float32, 3000)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * 0.7)
		}
		want := refDist(p, logits, nil, nil)
		s := NewSampler(p, nil)
		pr, ok := s.scratch.Probs(append([]float32(nil), logits...), s.Next())
		if !ok {
			t.Fatalf("case %d: no candidates", ci)
		}
		got := map[int32]bool{}
		for i, x := range pr {
			if x > 0 {
				got[int32(i)] = true
			}
		}
		n := 0
		for i, w := range want {
			if (w > 0) != got[int32(i)] {
				t.Errorf("case %d (%+v): token %d kept %v, reference %v", ci, p, i, got[int32(i)], w > 0)
			}
			if w > 0 {
				n++
			}
		}
		if n < 65 && p.TopP > 0 {
			t.Errorf("case %d: only %d tokens kept; the test wants top-p sets beyond 64", ci, n)
		}
	}
}

func TestGreedyAndValidate(t *testing.T) {
	s := NewSampler(Sampling{}, nil)
	l := []float32{1, 5, float32(math.NaN()), 5, -2}
	if got := s.Sample(l); got != 1 {
		t.Errorf("greedy picked %d, want 1 (first of the ties, NaN never wins)", got)
	}
	for _, bad := range []Sampling{{Temperature: -1}, {TopP: 1.5}, {MinP: -0.1}, {TopK: -3}, {RepetitionPenalty: -1}, {Temperature: float32(math.NaN())}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestStopMatcher(t *testing.T) {
	m := NewStopMatcher([]string{"STOP", "\n\n"})
	var got string
	for _, piece := range []string{"hel", "lo S", "TO", "x wor", "ld\n", "\nmore"} {
		out, stopped := m.Push(piece)
		got += out
		if stopped {
			break
		}
	}
	got += m.Flush()
	if got != "hello STOx world" {
		t.Errorf("got %q", got)
	}
}
