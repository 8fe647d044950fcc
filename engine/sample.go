package engine

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/marlin-llm/marlin/backend/sampling"
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
// far for the penalties; the draw itself is sampling's.
type Sampler struct {
	p       Sampling
	rng     *rand.Rand
	seen    map[int32]bool // prompt and output tokens (repetition penalty)
	counts  map[int32]int  // output tokens (presence and frequency)
	scratch sampling.Scratch
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

// Penalised reports whether the sampler changes the logits before drawing
// (repetition, presence or frequency penalties).
func (s *Sampler) Penalised() bool {
	return s.seen != nil || s.p.PresencePenalty != 0 || s.p.FrequencyPenalty != 0
}

// Next returns the parameters of the next draw, with its uniform number
// taken from the sequence's generator (greedy draws take none).
func (s *Sampler) Next() sampling.Params {
	p := sampling.Params{Temperature: s.p.Temperature, TopK: s.p.TopK, TopP: s.p.TopP, MinP: s.p.MinP}
	if !p.Greedy() {
		p.U = s.rng.Float64()
	}
	return p
}

// Sample returns the next token drawn from logits (which it may modify):
// the penalties, then sampling's draw with Next's parameters.
func (s *Sampler) Sample(logits []float32) int32 {
	s.penalise(logits)
	return s.scratch.Draw(logits, s.Next())
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
