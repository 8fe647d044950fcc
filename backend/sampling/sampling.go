// Package sampling draws the next token from a row of logits: greedy
// (argmax), or temperature with top-k, top-p and min-p filters. It is the
// definition every backend's Sample op follows (the CPU backend calls it;
// the CUDA kernels are tested against it) and what the engine uses when it
// samples on the host. Penalties, which need a sequence's history, are
// applied to the logits before, by the engine.
package sampling

import (
	"math"
	"slices"

	"github.com/marlin-llm/marlin/backend/cpu/vkernels"
)

// Params choose how one token is drawn. The zero value is greedy.
type Params struct {
	// Temperature divides the logits; 0 means greedy (argmax).
	Temperature float32
	// TopK keeps the k most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches p (0 or 1: all).
	TopP float32
	// MinP drops tokens less likely than MinP times the most likely one.
	MinP float32
	// U, uniform in [0, 1), picks the token: the first one, in vocabulary
	// order, at which the running sum of the kept probabilities exceeds
	// U times their total. Unused when greedy.
	U float64
}

// Greedy reports whether p takes the argmax.
func (p *Params) Greedy() bool { return p.Temperature == 0 }

// Filtered reports whether p drops tokens before drawing.
func (p *Params) Filtered(vocab int) bool {
	return (p.TopK > 0 && p.TopK < vocab) || (p.TopP > 0 && p.TopP < 1) || p.MinP > 0
}

// Token is a token id with a value (a probability or a log-probability).
type Token struct {
	ID int32
	P  float32
}

// Scratch holds Draw's working memory; one per goroutine.
type Scratch struct {
	probs []float32
	work  []Token
}

// Draw returns the token drawn from logits with p (the argmax when p is
// greedy, when a logit is +Inf, when no logit is finite or the
// temperature is too small to divide by). NaN logits are never drawn.
func (s *Scratch) Draw(logits []float32, p Params) int32 {
	if p.Greedy() {
		return Argmax(logits)
	}
	pr, ok := s.Probs(logits, p)
	if !ok {
		return Argmax(logits)
	}
	var sum float64
	last := int32(-1)
	for i, x := range pr {
		sum += float64(x)
		if x > 0 {
			last = int32(i)
		}
	}
	if last < 0 {
		return Argmax(logits)
	}
	r := p.U * sum
	for i, x := range pr {
		if x > 0 {
			r -= float64(x)
			if r < 0 {
				return int32(i)
			}
		}
	}
	return last
}

// Probs returns the (unnormalised) probabilities Draw draws from:
// softmax(logits / Temperature) in float32 (vkernels.SoftmaxScaled, a few
// ulps), with every token the filters drop set to 0. The slice is s's and
// valid until its next use. ok is false when Draw takes the argmax instead
// (no finite logit, a +Inf one, or a temperature too small to divide by).
//
// The filters, in the order llama.cpp, vLLM and transformers use: top-k
// keeps the k most likely tokens; top-p then the fewest most likely of
// those whose probability reaches TopP of their total (summed in float64,
// most likely first); min-p then those at least MinP times the most likely
// one. Ties are ordered by id. Top-p sorts only as many of the most likely
// tokens as it needs: it selects the 64 largest, sorts them and
// accumulates, and widens the selection fourfold while the accumulated
// mass falls short.
func (s *Scratch) Probs(logits []float32, p Params) ([]float32, bool) {
	inv := 1 / p.Temperature
	if math.IsInf(float64(inv), 0) || p.Temperature <= 0 {
		return nil, false
	}
	if cap(s.probs) < len(logits) {
		s.probs = make([]float32, len(logits))
	}
	pr := s.probs[:len(logits)]
	finite := false
	for i, l := range logits {
		if math.Float32bits(l)&0x7f800000 != 0x7f800000 { // finite: the usual case
			finite = true
		} else if l != l { // NaN is never drawn
			l = float32(math.Inf(-1))
		} else if l > 0 {
			return nil, false // +Inf: the argmax is the only choice
		}
		pr[i] = l
	}
	if !finite {
		return nil, false
	}
	vkernels.SoftmaxScaled(pr, inv)
	if !p.Filtered(len(pr)) {
		return pr, true
	}
	c := s.work[:0]
	for i, x := range pr {
		if x > 0 {
			c = append(c, Token{int32(i), x})
		}
	}
	s.work = c
	if len(c) == 0 {
		return pr, true
	}
	if k := p.TopK; k > 0 && k < len(c) {
		partialTopK(c, k)
		c = c[:k]
	}
	sorted := false
	if tp := p.TopP; tp > 0 && tp < 1 {
		var total float64
		for _, x := range c {
			total += float64(x.P)
		}
		want := float64(tp) * total
		for k := min(64, len(c)); ; k = min(4*k, len(c)) {
			partialTopK(c, k)
			sortTokens(c[:k])
			var acc float64
			n := 0
			for n < k && acc < want {
				acc += float64(c[n].P)
				n++
			}
			if acc >= want || k == len(c) {
				c = c[:n]
				break
			}
		}
		sorted = true
	}
	if m := p.MinP; m > 0 {
		top := c[0].P
		if !sorted {
			for _, x := range c {
				top = max(top, x.P)
			}
		}
		thr := m * top
		keep := c[:0]
		for _, x := range c {
			if x.P >= thr {
				keep = append(keep, x)
			}
		}
		c = keep
	}
	clear(pr)
	for _, x := range c {
		pr[x.ID] = x.P
	}
	return pr, true
}

// Argmax returns the index of the largest logit (the first on ties; NaN
// never wins; 0 when none is larger than −Inf).
func Argmax(logits []float32) int32 {
	best, bi := float32(math.Inf(-1)), 0
	for i, l := range logits {
		if l > best {
			best, bi = l, i
		}
	}
	return int32(bi)
}

// Largest returns the k largest values of v with their indices, largest
// first (ties by index).
func Largest(v []float32, k int) []Token {
	k = min(k, len(v))
	if k <= 0 {
		return nil
	}
	c := make([]Token, len(v))
	for i, x := range v {
		c[i] = Token{int32(i), x}
	}
	partialTopK(c, k)
	c = c[:k]
	sortTokens(c)
	return c
}

func sortTokens(c []Token) {
	slices.SortFunc(c, func(a, b Token) int {
		switch {
		case a.P > b.P:
			return -1
		case a.P < b.P:
			return 1
		}
		return int(a.ID - b.ID)
	})
}

// partialTopK moves the k largest Tokens to the front of c (unordered).
func partialTopK(c []Token, k int) {
	less := func(a, b Token) bool { return a.P > b.P || (a.P == b.P && a.ID < b.ID) }
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
