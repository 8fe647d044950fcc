package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/sampling"
	"github.com/marlin-llm/marlin/model"
)

// PerplexityResult is the outcome of Perplexity (and of PerplexityKL,
// which also fills the comparison fields).
type PerplexityResult struct {
	PPL    float64 // exp(NLL / Tokens)
	NLL    float64 // total negative log-likelihood, in nats
	Tokens int     // tokens scored
	Ctx    int

	// PerplexityKL only: the base model's perplexity on the same tokens,
	// the mean over the scored positions of KL(base ‖ m) between the two
	// models' next-token distributions (nats), and the fraction of those
	// positions where both models' most likely token is the same.
	BasePPL, KL, Top1 float64
}

// Perplexity scores ids with m: the stream is cut into consecutive windows of
// ctx−1 tokens (ctx tokens when bos < 0); each window is prefixed with bos
// and every one of its tokens is scored given the tokens before it in the
// window. This is the definition scripts/device/make_references.py computes
// with transformers. progress, when set, is called after each window with
// the tokens done so far.
func Perplexity(ctx context.Context, m model.Model, be backend.Backend, ids []int32, window int, bos int32, progress func(done, total int)) (PerplexityResult, error) {
	return score(ctx, scorer{m, be}, nil, ids, window, bos, progress)
}

// PerplexityKL is Perplexity of m that also runs base (typically the
// unquantized model m was made from, on its own backend) over the same
// windows and compares the two models' next-token distributions at every
// scored position: KL(base ‖ m) = Σ_v p_base(v)·log(p_base(v)/p_m(v)),
// which measures m's deviation over the whole distribution rather than at
// the one token the text holds. The models must share the vocabulary.
func PerplexityKL(ctx context.Context, m model.Model, be backend.Backend, base model.Model, baseBE backend.Backend, ids []int32, window int, bos int32, progress func(done, total int)) (PerplexityResult, error) {
	if mv, bv := m.Info().Vocab, base.Info().Vocab; mv != bv {
		return PerplexityResult{}, fmt.Errorf("perplexity: vocabularies differ (%d and %d tokens)", mv, bv)
	}
	return score(ctx, scorer{m, be}, &scorer{base, baseBE}, ids, window, bos, progress)
}

// scorer is a model with the backend it runs on.
type scorer struct {
	m  model.Model
	be backend.Backend
}

// cache returns a KV cache holding one window of the model, and its blocks.
func (s scorer) cache(window int) (backend.KVCache, []int32, error) {
	const blockSize = 16
	spec := s.m.Info().KV
	spec.BlockSize = blockSize
	spec.Blocks = (window + blockSize - 1) / blockSize
	cache, err := s.be.NewKVCache(spec)
	if err != nil {
		return nil, nil, err
	}
	blocks := make([]int32, spec.Blocks)
	for i := range blocks {
		blocks[i] = int32(i)
	}
	return cache, blocks, nil
}

// score is Perplexity, and PerplexityKL when base is set.
func score(ctx context.Context, s scorer, base *scorer, ids []int32, window int, bos int32, progress func(done, total int)) (PerplexityResult, error) {
	if window < 2 {
		return PerplexityResult{}, fmt.Errorf("perplexity: context %d must be at least 2", window)
	}
	info := s.m.Info()
	for _, sc := range []*scorer{&s, base} {
		if sc == nil {
			continue
		}
		if n := sc.m.Info().ContextLength; n > 0 && window > n {
			return PerplexityResult{}, fmt.Errorf("perplexity: context %d exceeds the model's %d", window, n)
		}
	}
	if len(ids) == 0 {
		return PerplexityResult{}, errors.New("perplexity: no tokens to score")
	}
	step := window
	if bos >= 0 {
		step = window - 1
	}
	cache, blocks, err := s.cache(window)
	if err != nil {
		return PerplexityResult{}, err
	}
	var baseCache backend.KVCache
	var baseBlocks []int32
	if base != nil {
		if baseCache, baseBlocks, err = base.cache(window); err != nil {
			return PerplexityResult{}, err
		}
	}
	res := PerplexityResult{Ctx: window}
	var baseNLL, kl float64
	var agree int
	vocab := info.Vocab
	var buf, baseBuf []float32
	for start := 0; start < len(ids); start += step {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		chunk := ids[start:min(start+step, len(ids))]
		b := &backend.Batch{}
		if bos >= 0 {
			b.Tokens = append(b.Tokens, bos)
		}
		b.Tokens = append(b.Tokens, chunk...)
		// the row predicting chunk[i] is the one before it
		first := len(b.Tokens) - len(chunk) - 1
		var rows []int32
		for i := range b.Tokens {
			b.Pos = append(b.Pos, int32(i))
			if i >= first && i < len(b.Tokens)-1 {
				rows = append(rows, int32(i))
			}
		}
		if first < 0 { // no BOS: the first token is not scored
			rows = rows[:0]
			for i := 0; i < len(b.Tokens)-1; i++ {
				rows = append(rows, int32(i))
			}
			chunk = chunk[1:]
		}
		b.Seqs = []backend.Seq{{Start: 0, Len: len(b.Tokens), Blocks: blocks}}
		buf = slices.Grow(buf[:0], len(rows)*vocab)[:len(rows)*vocab]
		if err := s.be.Read(buf, s.m.Forward(b, cache, rows)); err != nil {
			return res, err
		}
		if base != nil {
			b.Seqs = []backend.Seq{{Start: 0, Len: len(b.Tokens), Blocks: baseBlocks}}
			baseBuf = slices.Grow(baseBuf[:0], len(rows)*vocab)[:len(rows)*vocab]
			if err := base.be.Read(baseBuf, base.m.Forward(b, baseCache, rows)); err != nil {
				return res, err
			}
		}
		for i, t := range chunk {
			row := buf[i*vocab : (i+1)*vocab]
			z := logNorm(row)
			res.NLL -= float64(row[t]) - z
			res.Tokens++
			if base != nil {
				brow := baseBuf[i*vocab : (i+1)*vocab]
				bz := logNorm(brow)
				baseNLL -= float64(brow[t]) - bz
				kl += klDiv(brow, row, bz, z)
				if sampling.Argmax(brow) == sampling.Argmax(row) {
					agree++
				}
			}
		}
		if progress != nil {
			progress(min(start+step, len(ids)), len(ids))
		}
	}
	if res.Tokens == 0 {
		return res, errors.New("perplexity: no tokens to score")
	}
	n := float64(res.Tokens)
	res.PPL = math.Exp(res.NLL / n)
	if base != nil {
		res.BasePPL = math.Exp(baseNLL / n)
		res.KL = kl / n
		res.Top1 = float64(agree) / n
	}
	return res, nil
}

// logNorm returns log Σ exp(row), computed in float64 from the maximum,
// so that log softmax(row)[v] = row[v] − logNorm(row).
func logNorm(row []float32) float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

// klDiv returns KL(softmax(p) ‖ softmax(q)) of two rows of logits whose
// logNorm are pz and qz, in float64: Σ_v p_v·(log p_v − log q_v).
func klDiv(p, q []float32, pz, qz float64) float64 {
	var kl float64
	for v := range p {
		lp := float64(p[v]) - pz
		kl += math.Exp(lp) * (lp - (float64(q[v]) - qz))
	}
	return max(kl, 0)
}
