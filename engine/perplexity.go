package engine

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/model"
)

// PerplexityResult is the outcome of Perplexity.
type PerplexityResult struct {
	PPL    float64 // exp(NLL / Tokens)
	NLL    float64 // total negative log-likelihood, in nats
	Tokens int     // tokens scored
	Ctx    int
}

// Perplexity scores ids with m: the stream is cut into consecutive windows of
// ctx−1 tokens (ctx tokens when bos < 0); each window is prefixed with bos
// and every one of its tokens is scored given the tokens before it in the
// window. This is the definition scripts/device/make_references.py computes
// with transformers. progress, when set, is called after each window with
// the tokens done so far.
func Perplexity(ctx context.Context, m model.Model, be backend.Backend, ids []int32, window int, bos int32, progress func(done, total int)) (PerplexityResult, error) {
	if window < 2 {
		return PerplexityResult{}, fmt.Errorf("perplexity: context %d must be at least 2", window)
	}
	info := m.Info()
	if info.ContextLength > 0 && window > info.ContextLength {
		return PerplexityResult{}, fmt.Errorf("perplexity: context %d exceeds the model's %d", window, info.ContextLength)
	}
	if len(ids) == 0 {
		return PerplexityResult{}, errors.New("perplexity: no tokens to score")
	}
	step := window
	if bos >= 0 {
		step = window - 1
	}
	const blockSize = 16
	spec := info.KV
	spec.BlockSize = blockSize
	spec.Blocks = (window + blockSize - 1) / blockSize
	cache, err := be.NewKVCache(spec)
	if err != nil {
		return PerplexityResult{}, err
	}
	blocks := make([]int32, spec.Blocks)
	for i := range blocks {
		blocks[i] = int32(i)
	}
	res := PerplexityResult{Ctx: window}
	vocab := info.Vocab
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
		logits := m.Forward(b, cache, rows)
		buf := make([]float32, len(rows)*vocab)
		if err := be.Read(buf, logits); err != nil {
			return res, err
		}
		for i, t := range chunk {
			row := buf[i*vocab : (i+1)*vocab]
			res.NLL -= logProb(row, t)
			res.Tokens++
		}
		if progress != nil {
			progress(min(start+step, len(ids)), len(ids))
		}
	}
	if res.Tokens == 0 {
		return res, errors.New("perplexity: no tokens to score")
	}
	res.PPL = math.Exp(res.NLL / float64(res.Tokens))
	return res, nil
}

// logProb returns log softmax(row)[t] computed in float64.
func logProb(row []float32, t int32) float64 {
	m := math.Inf(-1)
	for _, v := range row {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - m)
	}
	return float64(row[t]) - m - math.Log(s)
}
