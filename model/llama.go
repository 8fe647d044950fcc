package model

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/quant"
)

// Llama is the pre-norm decoder of LlamaForCausalLM and Qwen3ForCausalLM,
// and, with mixture-of-experts feed-forward blocks, of MixtralForCausalLM
// and Qwen3MoeForCausalLM:
//
//	h = embed(tokens)
//	for each layer:
//	    x = rmsnorm(h)
//	    q, k, v = x·Wq, x·Wk, x·Wv           (+ biases when attention_bias)
//	    q, k = rmsnorm_per_head(q), (k)      (Qwen3 only)
//	    q, k = rope(q), rope(k)
//	    h += attention(q, k, v)·Wo            (causal, grouped-query)
//	    x = rmsnorm(h)
//	    h += ffn(x)                           (SwiGLU, or a mixture of SwiGLU experts)
//	logits = rmsnorm(h)·Wout                 (Wout = embed when tied)
type Llama struct {
	info    Info
	be      backend.Backend
	ck      *hf.Checkpoint
	heads   int
	kvHeads int
	headDim int
	eps     float32
	scale   float32 // attention logit scale, 1/√headDim
	rope    backend.Rope

	embed  backend.Matrix
	layers []llamaLayer
	norm   backend.Vector
	head   backend.Matrix

	s *scratch
}

type llamaLayer struct {
	attnNorm, mlpNorm backend.Norm
	q, k, v, o        backend.Matrix
	qb, kb, vb, ob    backend.Vector // attention biases (nil without attention_bias)
	qNorm, kNorm      backend.Vector // per-head norms (Qwen3)
	ffn               ffn
}

func newLlama(ck *hf.Checkpoint, be backend.Backend, q *quant.Config) (Model, error) {
	c := ck.Config
	arch := c.Architecture()
	qkNorm := arch == "Qwen3ForCausalLM" || arch == "Qwen3MoeForCausalLM"
	m := &Llama{be: be, ck: ck, heads: c.NumAttentionHeads, kvHeads: c.KVHeads(), headDim: c.HeadDimension(), s: newScratch(be)}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return nil, fmt.Errorf("%s: hidden_act %q is not supported (only silu)", ck.Dir, c.HiddenAct)
	}
	if sw, ok := c.Raw["use_sliding_window"]; ok && string(sw) == "true" {
		return nil, fmt.Errorf("%s: sliding-window attention is not supported", ck.Dir)
	}
	H, V, L := c.HiddenSize, c.VocabSize, c.NumHiddenLayers
	if H <= 0 || V <= 0 || L <= 0 || m.heads <= 0 || m.kvHeads <= 0 || m.headDim <= 0 || m.heads%m.kvHeads != 0 {
		return nil, fmt.Errorf("%s: config.json: inconsistent sizes (hidden %d, vocab %d, layers %d, heads %d, kv heads %d, head_dim %d)",
			ck.Dir, H, V, L, m.heads, m.kvHeads, m.headDim)
	}
	m.eps = 1e-6
	if c.RMSNormEps != nil {
		m.eps = float32(*c.RMSNormEps)
	}
	m.scale = float32(1 / math.Sqrt(float64(m.headDim)))
	r, err := c.Rope()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ck.Dir, err)
	}
	if m.rope, err = ropeFor(r, int(float64(m.headDim)*r.PartialRotaryFactor)); err != nil {
		return nil, fmt.Errorf("%s: %w", ck.Dir, err)
	}
	m.info = baseInfo(c)
	m.info.KV = backend.KVSpec{Layers: L, KVHeads: m.kvHeads, KeyDim: m.headDim, ValueDim: m.headDim}
	applyGeneration(&m.info, ck)

	l := newLoader(ck, be, q, &m.info)
	attnBias := c.AttentionBias != nil && *c.AttentionBias
	mlpBias := c.MLPBias != nil && *c.MLPBias
	qd, kvd := m.heads*m.headDim, m.kvHeads*m.headDim
	m.embed = l.matrix("model.embed_tokens", V, H)
	m.layers = make([]llamaLayer, L)
	for i := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ly := &m.layers[i]
		ly.attnNorm = backend.Norm{W: l.vector(p+"input_layernorm.weight", H), Eps: m.eps}
		qkv := l.matrices(wspec{p + "self_attn.q_proj", qd, H}, wspec{p + "self_attn.k_proj", kvd, H}, wspec{p + "self_attn.v_proj", kvd, H})
		ly.q, ly.k, ly.v = qkv[0], qkv[1], qkv[2]
		ly.o = l.matrix(p+"self_attn.o_proj", H, qd)
		ly.qb = l.optVector(p+"self_attn.q_proj.bias", qd, attnBias)
		ly.kb = l.optVector(p+"self_attn.k_proj.bias", kvd, attnBias)
		ly.vb = l.optVector(p+"self_attn.v_proj.bias", kvd, attnBias)
		ly.ob = l.optVector(p+"self_attn.o_proj.bias", H, attnBias)
		ly.qNorm = l.optVector(p+"self_attn.q_norm.weight", m.headDim, qkNorm)
		ly.kNorm = l.optVector(p+"self_attn.k_norm.weight", m.headDim, qkNorm)
		ly.mlpNorm = backend.Norm{W: l.vector(p+"post_attention_layernorm.weight", H), Eps: m.eps}
		ly.ffn, err = llamaFFN(l, c, i, p, mlpBias)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ck.Dir, err)
		}
	}
	m.norm, m.head = l.outputHead(m.embed)
	if l.err != nil {
		return nil, l.err
	}
	return m, nil
}

// llamaFFN loads layer i's feed-forward block: dense SwiGLU, or Mixtral's
// and Qwen3-MoE's softmax-routed experts.
func llamaFFN(l *loader, c *hf.Config, i int, p string, bias bool) (ffn, error) {
	H, E := c.HiddenSize, c.Experts()
	topK := 0
	if c.NumExpertsPerTok != nil {
		topK = *c.NumExpertsPerTok
	}
	switch c.Architecture() {
	case "MixtralForCausalLM":
		if E <= 0 || topK <= 0 || topK > E {
			return nil, fmt.Errorf("config.json: %d experts, %d per token", E, topK)
		}
		mp := p + "block_sparse_moe."
		return &moe{
			router:  l.matrix(mp+"gate", E, H),
			route:   backend.Router{TopK: topK, Normalize: true},
			experts: loadExperts(l, mp+"experts.", [3]string{"w1", "w3", "w2"}, E, topK, H, c.IntermediateSize),
		}, nil
	case "Qwen3MoeForCausalLM":
		step := 1
		if c.DecoderSparseStep != nil {
			step = *c.DecoderSparseStep
		}
		sparse := E > 0 && step > 0 && (i+1)%step == 0
		for _, d := range c.MLPOnlyLayers {
			if d == i {
				sparse = false
			}
		}
		if !sparse {
			break
		}
		if topK <= 0 || topK > E || c.MoEIntermediateSize == nil {
			return nil, fmt.Errorf("config.json: %d experts, %d per token, moe_intermediate_size %v", E, topK, c.MoEIntermediateSize)
		}
		return &moe{
			router:  l.matrix(p+"mlp.gate", E, H),
			route:   backend.Router{TopK: topK, Normalize: c.NormTopKProb != nil && *c.NormTopKProb},
			experts: loadExperts(l, p+"mlp.experts.", projNames, E, topK, H, *c.MoEIntermediateSize),
		}, nil
	}
	if c.IntermediateSize <= 0 {
		return nil, fmt.Errorf("config.json: intermediate_size %d", c.IntermediateSize)
	}
	return loadMLP(l, p+"mlp.", projNames, H, c.IntermediateSize, bias), nil
}

// Info implements Model.
func (m *Llama) Info() *Info { return &m.info }

// Close implements Model.
func (m *Llama) Close() error { return m.ck.Close() }

// Forward implements Model.
func (m *Llama) Forward(b *backend.Batch, cache backend.KVCache, rows []int32) backend.Tensor {
	be, s, n := m.be, m.s, len(b.Tokens)
	h := s.get("h", n, m.info.Hidden)
	q, att := s.get("q", n, m.heads*m.headDim), s.get("att", n, m.heads*m.headDim)
	k, v := s.get("k", n, m.kvHeads*m.headDim), s.get("v", n, m.kvHeads*m.headDim)

	be.Embed(h, m.embed, b.Tokens)
	for i := range m.layers {
		L := &m.layers[i]

		// attention block: q, k, v = rmsnorm(h)·W
		be.MatMulN([]backend.Tensor{q, k, v}, h, []backend.Matrix{L.q, L.k, L.v}, &L.attnNorm)
		addBias(be, q, L.qb)
		addBias(be, k, L.kb)
		addBias(be, v, L.vb)
		if L.qNorm != nil {
			be.RMSNorm(q, q, L.qNorm, m.eps)
			be.RMSNorm(k, k, L.kNorm, m.eps)
		}
		be.Attention(att, q, k, v, cache, i, b, m.scale, &m.rope) // q, k rotated at their positions first
		residual(be, s, h, att, L.o, L.ob)

		// feed-forward block: h += ffn(rmsnorm(h))
		L.ffn.addTo(be, s, h, &L.mlpNorm)
	}
	return outputHead(be, s, h, rows, m.norm, m.eps, m.head)
}

// outputHead computes the logits of the selected rows of h.
func outputHead(be backend.Backend, s *scratch, h backend.Tensor, rows []int32, norm backend.Vector, eps float32, head backend.Matrix) backend.Tensor {
	last := s.get("last", len(rows), h.Cols())
	logits := s.get("logits", len(rows), head.Rows())
	be.CopyRows(last, h, rows)
	be.RMSNorm(last, last, norm, eps)
	be.MatMul(logits, last, head)
	return logits
}

// baseInfo fills the Info fields every architecture shares.
func baseInfo(c *hf.Config) Info {
	info := Info{Architecture: c.Architecture(), Vocab: c.VocabSize, ContextLength: c.MaxPositionEmbeddings,
		BOS: -1, Layers: c.NumHiddenLayers, Hidden: c.HiddenSize}
	if c.BOSTokenID != nil {
		info.BOS = int32(*c.BOSTokenID)
	}
	for _, id := range c.EOSTokenIDs() {
		info.EOS = append(info.EOS, int32(id))
	}
	return info
}

// applyGeneration lets generation_config.json's EOS ids override config.json's.
func applyGeneration(info *Info, ck *hf.Checkpoint) {
	if ck.Generation == nil {
		return
	}
	if ids := ck.Generation.EOSTokenIDs(); len(ids) > 0 {
		info.EOS = info.EOS[:0]
		for _, id := range ids {
			info.EOS = append(info.EOS, int32(id))
		}
	}
}
