package engine_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/quant"
	"github.com/marlin-llm/marlin/quantize"
)

// windowLogits runs tokens through m in a fresh cache and returns the
// logits of every position, one row each.
func windowLogits(t *testing.T, m model.Model, be backend.Backend, tokens []int32) [][]float64 {
	t.Helper()
	spec := m.Info().KV
	spec.BlockSize = 16
	spec.Blocks = (len(tokens) + 15) / 16
	cache, err := be.NewKVCache(spec)
	if err != nil {
		t.Fatal(err)
	}
	blocks := make([]int32, spec.Blocks)
	rows := make([]int32, len(tokens))
	b := &backend.Batch{Tokens: tokens}
	for i := range tokens {
		b.Pos = append(b.Pos, int32(i))
		rows[i] = int32(i)
	}
	for i := range blocks {
		blocks[i] = int32(i)
	}
	b.Seqs = []backend.Seq{{Start: 0, Len: len(tokens), Blocks: blocks}}
	v := m.Info().Vocab
	buf := make([]float32, len(tokens)*v)
	if err := be.Read(buf, m.Forward(b, cache, rows)); err != nil {
		t.Fatal(err)
	}
	out := make([][]float64, len(tokens))
	for i := range out {
		out[i] = make([]float64, v)
		for j := range v {
			out[i][j] = float64(buf[i*v+j])
		}
	}
	return out
}

// softmax returns the probabilities of a row of logits, plainly.
func softmax(row []float64) []float64 {
	var s float64
	p := make([]float64, len(row))
	for i, x := range row {
		p[i] = math.Exp(x)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p
}

// TestPerplexityKL: PerplexityKL of an RTN int4 copy of a fixture against
// the fixture gives both models' perplexities as Perplexity does, and the
// mean KL and top-1 agreement of a plain computation (probabilities, then
// Σ p·log(p/q)) over the same windows, with and without BOS; the model
// against itself gives KL 0 and full agreement.
func TestPerplexityKL(t *testing.T) {
	dir := t.TempDir() + "/q"
	spec, err := quant.ParseSpec("int4", 16, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Run(fixture, dir, quantize.Options{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	beB, beQ := cpu.New(1), cpu.New(1)
	base, err := model.Load(fixture, beB)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	q, err := model.Load(dir, beQ)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]int32, 75)
	for i := range ids {
		ids[i] = int32(2 + rng.IntN(250))
	}
	ctx := context.Background()
	const window = 20
	for _, bos := range []int32{0, -1} {
		res, err := engine.PerplexityKL(ctx, q, beQ, base, beB, ids, window, bos, nil)
		if err != nil {
			t.Fatal(err)
		}
		pq, err := engine.Perplexity(ctx, q, beQ, ids, window, bos, nil)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := engine.Perplexity(ctx, base, beB, ids, window, bos, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.PPL != pq.PPL || res.Tokens != pq.Tokens || math.Abs(res.BasePPL-pb.PPL) > 1e-12*pb.PPL {
			t.Errorf("bos %d: ppl %v base %v over %d tokens; Perplexity gives %v and %v over %d", bos, res.PPL, res.BasePPL, res.Tokens, pq.PPL, pb.PPL, pq.Tokens)
		}
		// the plain reference: windows of window−1 text tokens after BOS,
		// or of window tokens whose first is not scored
		var kl float64
		var agree, n int
		step := window
		if bos >= 0 {
			step--
		}
		for start := 0; start < len(ids); start += step {
			toks := ids[start:min(start+step, len(ids))]
			if bos >= 0 {
				toks = append([]int32{bos}, toks...)
			}
			lb, lq := windowLogits(t, base, beB, toks), windowLogits(t, q, beQ, toks)
			for i := 0; i+1 < len(toks); i++ {
				p, r := softmax(lb[i]), softmax(lq[i])
				var d float64
				bi, qi := 0, 0
				for v := range p {
					d += p[v] * math.Log(p[v]/r[v])
					if p[v] > p[bi] {
						bi = v
					}
					if r[v] > r[qi] {
						qi = v
					}
				}
				kl += d
				if bi == qi {
					agree++
				}
				n++
			}
		}
		kl /= float64(n)
		top1 := float64(agree) / float64(n)
		t.Logf("bos %d: %d tokens, ppl %.4f (base %.4f), KL %.6f (plain %.6f), top-1 %.4f (plain %.4f)", bos, res.Tokens, res.PPL, res.BasePPL, res.KL, kl, res.Top1, top1)
		// 1e-6: the windows' logits come from batches of another make-up
		// than windowLogits', which on CPUs without AVX-512 (kernels without
		// batch invariance) moves them by float32 ulps; bitwise elsewhere
		if n != res.Tokens || math.Abs(res.KL-kl) > 1e-6*kl || res.Top1 != top1 {
			t.Errorf("bos %d: KL %v top-1 %v over %d tokens; plain %v, %v over %d", bos, res.KL, res.Top1, res.Tokens, kl, top1, n)
		}
		if kl <= 0 || top1 == 1 {
			t.Errorf("bos %d: int4 copy indistinguishable (KL %v, top-1 %v): the test compares nothing", bos, kl, top1)
		}
	}
	self, err := engine.PerplexityKL(ctx, base, beB, base, beB, ids, window, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if self.KL != 0 || self.Top1 != 1 || self.PPL != self.BasePPL {
		t.Errorf("model against itself: KL %v, top-1 %v, ppl %v and %v", self.KL, self.Top1, self.PPL, self.BasePPL)
	}
}
