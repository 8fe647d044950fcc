package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/marlin-llm/marlin/backend/cpu/vkernels"
)

// Sampling chooses how the next token is drawn from the logits. The zero
// value is greedy decoding. Filters apply in the order llama.cpp, vLLM and
// transformers use: penalties, temperature, top-k, top-p, min-p.
type Sampling struct {
	// Temperature divides the logits; 0 means greedy (argmax).
	Temperature float32
	// TopK keeps the k most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches p (0 or 1: all).
	TopP float32
	// MinP drops tokens less likely than MinP times the most likely one.
	MinP float32
	// RepetitionPenalty (>1 discourages) divides the positive logits and
	// multiplies the negative logits of every token seen in the prompt or
	// the output, as transformers does (0 or 1: off).
	RepetitionPenalty float32
	// PresencePenalty is subtracted once from the logit of every token the
	// output already contains; FrequencyPenalty times the number of times
	// it occurs (OpenAI's definitions).
	PresencePenalty  float32
	FrequencyPenalty float32
	// Seed makes sampling reproducible; without it the seed is random.
	Seed    uint64
	HasSeed bool
}

// Validate reports out-of-range parameters.
func (s *Sampling) Validate() error {
	switch {
	case s.Temperature < 0 || math.IsNaN(float64(s.Temperature)):
		return fmt.Errorf("temperature %g must be ≥ 0", s.Temperature)
	case s.TopK < 0:
		return fmt.Errorf("top_k %d must be ≥ 0", s.TopK)
	case s.TopP < 0 || s.TopP > 1 || math.IsNaN(float64(s.TopP)):
		return fmt.Errorf("top_p %g must be in [0, 1]", s.TopP)
	case s.MinP < 0 || s.MinP > 1 || math.IsNaN(float64(s.MinP)):
		return fmt.Errorf("min_p %g must be in [0, 1]", s.MinP)
	case s.RepetitionPenalty < 0 || math.IsNaN(float64(s.RepetitionPenalty)):
		return fmt.Errorf("repetition_penalty %g must be > 0", s.RepetitionPenalty)
	case math.IsNaN(float64(s.PresencePenalty)) || math.IsNaN(float64(s.FrequencyPenalty)):
		return fmt.Errorf("penalties must be numbers")
	}
	return nil
}

// Sampler draws tokens for one sequence. It remembers the tokens seen so
// far for the penalties.
type Sampler struct {
	p      Sampling
	rng    *rand.Rand
	seen   map[int32]bool // prompt and output tokens (repetition penalty)
	counts map[int32]int  // output tokens (presence and frequency)
	work   []candidate    // scratch
	probs  []float32      // scratch
}

type candidate struct {
	id int32
	p  float32 // probability, not normalised
}

// NewSampler returns a sampler for a sequence that starts with prompt.
func NewSampler(p Sampling, prompt []int32) *Sampler {
	seed := p.Seed
	if !p.HasSeed {
		seed = rand.Uint64()
	}
	s := &Sampler{p: p, rng: rand.New(rand.NewPCG(seed, 0x6d61726c696e)), counts: map[int32]int{}}
	if p.RepetitionPenalty != 0 && p.RepetitionPenalty != 1 {
		s.seen = map[int32]bool{}
		for _, t := range prompt {
			s.seen[t] = true
		}
	}
	return s
}

// Accept records a generated token for the penalties.
func (s *Sampler) Accept(id int32) {
	s.counts[id]++
	if s.seen != nil {
		s.seen[id] = true
	}
}

// Sample returns the next token drawn from logits (which it may modify).
func (s *Sampler) Sample(logits []float32) int32 {
	s.penalise(logits)
	if s.p.Temperature == 0 {
		return Argmax(logits)
	}
	c, ok := s.candidates(logits)
	if !ok {
		return Argmax(logits)
	}
	if c == nil { // no filter: draw from the whole vocabulary's probabilities
		if id := s.drawAll(s.probs[:len(logits)]); id >= 0 {
			return id
		}
		return Argmax(logits)
	}
	var sum float64
	for _, x := range c {
		sum += float64(x.p)
	}
	r := s.rng.Float64() * sum
	for _, x := range c {
		r -= float64(x.p)
		if r < 0 {
			return x.id
		}
	}
	return c[len(c)-1].id
}

// candidates returns the tokens the filters keep with their (unnormalised)
// probabilities (nil when no filter is set: s.probs then holds the whole
// vocabulary's): in vocabulary order when no filter needs an order, else
// most likely first (ties by id). ok is false when no token has a finite
// logit or the temperature is too small to divide by; the caller then
// falls back to the argmax.
//
// The probabilities of the whole vocabulary come from one SIMD softmax
// (vkernels.SoftmaxScaled, float32, a few ulps). Top-p sorts only as many
// of the most likely tokens as it needs: it selects the 64 largest, sorts
// them and accumulates, and widens the selection fourfold while the
// accumulated mass falls short of p.
func (s *Sampler) candidates(logits []float32) ([]candidate, bool) {
	inv := 1 / s.p.Temperature
	if math.IsInf(float64(inv), 0) {
		return nil, false
	}
	if cap(s.probs) < len(logits) {
		s.probs = make([]float32, len(logits))
	}
	pr := s.probs[:len(logits)]
	finite := false
	for i, l := range logits {
		switch {
		case l != l: // NaN is never drawn
			l = float32(math.Inf(-1))
		case !math.IsInf(float64(l), 0):
			finite = true
		case l > 0:
			return nil, false // +Inf: the argmax is the only choice
		}
		pr[i] = l
	}
	if !finite {
		return nil, false
	}
	vkernels.SoftmaxScaled(pr, inv)
	if (s.p.TopK <= 0 || s.p.TopK >= len(pr)) && !(s.p.TopP > 0 && s.p.TopP < 1) && s.p.MinP <= 0 {
		return nil, true // no filter: Sample draws from pr itself
	}
	c := s.work[:0]
	for i, p := range pr {
		if p > 0 {
			c = append(c, candidate{int32(i), p})
		}
	}
	s.work = c
	if len(c) == 0 {
		return nil, false
	}
	sorted := false
	if k := s.p.TopK; k > 0 && k < len(c) {
		partialTopK(c, k)
		c = c[:k]
	}
	if p := s.p.TopP; p > 0 && p < 1 {
		var total float64
		for _, x := range c {
			total += float64(x.p)
		}
		want := float64(p) * total
		for k := min(64, len(c)); ; k = min(4*k, len(c)) {
			partialTopK(c, k)
			sortCandidates(c[:k])
			var acc float64
			n := 0
			for n < k && acc < want {
				acc += float64(c[n].p)
				n++
			}
			if acc >= want || k == len(c) {
				c = c[:n]
				break
			}
		}
		sorted = true
	}
	if m := s.p.MinP; m > 0 {
		top := c[0].p
		for _, x := range c {
			top = max(top, x.p)
		}
		thr := m * top
		keep := c[:0]
		for _, x := range c {
			if x.p >= thr {
				keep = append(keep, x)
			}
		}
		c = keep
		if !sorted {
			sortCandidates(c)
		}
	}
	return c, true
}

// drawAll draws a token from the probabilities p of the whole vocabulary,
// by the same arithmetic as Sample over the candidates p > 0 in id order
// (tokens of probability 0 add nothing and are never drawn); −1 when every
// probability is 0.
func (s *Sampler) drawAll(p []float32) int32 {
	var sum float64
	last := int32(-1)
	for i, x := range p {
		sum += float64(x)
		if x > 0 {
			last = int32(i)
		}
	}
	r := s.rng.Float64() * sum
	for i, x := range p {
		if x > 0 {
			r -= float64(x)
			if r < 0 {
				return int32(i)
			}
		}
	}
	return last
}

func sortCandidates(c []candidate) {
	slices.SortFunc(c, func(a, b candidate) int {
		switch {
		case a.p > b.p:
			return -1
		case a.p < b.p:
			return 1
		}
		return int(a.id - b.id)
	})
}

func (s *Sampler) penalise(logits []float32) {
	if rp := s.p.RepetitionPenalty; s.seen != nil {
		for id := range s.seen {
			if int(id) < len(logits) {
				if l := logits[id]; l > 0 {
					logits[id] = l / rp
				} else {
					logits[id] = l * rp
				}
			}
		}
	}
	if s.p.PresencePenalty != 0 || s.p.FrequencyPenalty != 0 {
		for id, n := range s.counts {
			if int(id) < len(logits) {
				logits[id] -= s.p.PresencePenalty + s.p.FrequencyPenalty*float32(n)
			}
		}
	}
}

// Argmax returns the index of the largest logit (the first on ties; NaN
// never wins).
func Argmax(logits []float32) int32 {
	best, bi := float32(math.Inf(-1)), 0
	for i, l := range logits {
		if l > best {
			best, bi = l, i
		}
	}
	return int32(bi)
}

// partialTopK moves the k largest candidates to the front of c (unordered).
func partialTopK(c []candidate, k int) {
	less := func(a, b candidate) bool { return a.p > b.p || (a.p == b.p && a.id < b.id) }
	lo, hi := 0, len(c)-1
	for lo < hi {
		// median-of-three pivot, Hoare partition
		mid := lo + (hi-lo)/2
		if less(c[mid], c[lo]) {
			c[mid], c[lo] = c[lo], c[mid]
		}
		if less(c[hi], c[lo]) {
			c[hi], c[lo] = c[lo], c[hi]
		}
		if less(c[hi], c[mid]) {
			c[hi], c[mid] = c[mid], c[hi]
		}
		pivot := c[mid]
		i, j := lo, hi
		for i <= j {
			for less(c[i], pivot) {
				i++
			}
			for less(pivot, c[j]) {
				j--
			}
			if i <= j {
				c[i], c[j] = c[j], c[i]
				i++
				j--
			}
		}
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
		}
	}
}

// LogSoftmax writes log-probabilities of logits into dst (float64 sums).
func LogSoftmax(dst, logits []float32) {
	maxl := float32(math.Inf(-1))
	for _, l := range logits {
		maxl = max(maxl, l)
	}
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l - maxl))
	}
	lse := float64(maxl) + math.Log(sum)
	for i, l := range logits {
		dst[i] = float32(float64(l) - lse)
	}
}
