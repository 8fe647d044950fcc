package model

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/quant"
)

// Llama is the dense pre-norm decoder of LlamaForCausalLM and
// Qwen3ForCausalLM:
//
//	h = embed(tokens)
//	for each layer:
//	    x = rmsnorm(h)
//	    q, k, v = x·Wq, x·Wk, x·Wv           (+ biases when attention_bias)
//	    q, k = rmsnorm_per_head(q), (k)      (Qwen3 only)
//	    q, k = rope(q), rope(k)
//	    h += attention(q, k, v)·Wo            (causal, grouped-query)
//	    x = rmsnorm(h)
//	    h += (silu(x·Wgate) ⊙ x·Wup)·Wdown
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

	act *llamaActs
}

type llamaLayer struct {
	attnNorm, mlpNorm backend.Vector
	q, k, v, o        backend.Matrix
	qb, kb, vb, ob    backend.Vector // attention biases (nil without attention_bias)
	qNorm, kNorm      backend.Vector // per-head norms (Qwen3)
	gate, up, down    backend.Matrix
	gateB, upB, downB backend.Vector // MLP biases (nil without mlp_bias)
}

// llamaActs are the activation buffers, sized for up to cap rows.
type llamaActs struct {
	cap                int
	h, x, q, k, v, att backend.Tensor
	gate, up           backend.Tensor
	last, logits       backend.Tensor
}

func newLlama(ck *hf.Checkpoint, be backend.Backend, q *quant.Config) (Model, error) {
	c := ck.Config
	qwen3 := c.Architecture() == "Qwen3ForCausalLM"
	m := &Llama{be: be, ck: ck, heads: c.NumAttentionHeads, kvHeads: c.KVHeads(), headDim: c.HeadDimension()}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return nil, fmt.Errorf("%s: hidden_act %q is not supported (only silu)", ck.Dir, c.HiddenAct)
	}
	if sw, ok := c.Raw["use_sliding_window"]; ok && string(sw) == "true" {
		return nil, fmt.Errorf("%s: sliding-window attention is not supported", ck.Dir)
	}
	H, I, V := c.HiddenSize, c.IntermediateSize, c.VocabSize
	if H <= 0 || I <= 0 || V <= 0 || c.NumHiddenLayers <= 0 || m.heads <= 0 || m.kvHeads <= 0 || m.headDim <= 0 || m.heads%m.kvHeads != 0 {
		return nil, fmt.Errorf("%s: config.json: inconsistent sizes (hidden %d, intermediate %d, vocab %d, layers %d, heads %d, kv heads %d, head_dim %d)",
			ck.Dir, H, I, V, c.NumHiddenLayers, m.heads, m.kvHeads, m.headDim)
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
	m.info = Info{
		Architecture: c.Architecture(), Vocab: V, ContextLength: c.MaxPositionEmbeddings,
		BOS: -1, Layers: c.NumHiddenLayers, Hidden: H,
		KV: backend.KVSpec{Layers: c.NumHiddenLayers, KVHeads: m.kvHeads, KeyDim: m.headDim, ValueDim: m.headDim},
	}
	if c.BOSTokenID != nil {
		m.info.BOS = int32(*c.BOSTokenID)
	}
	for _, id := range c.EOSTokenIDs() {
		m.info.EOS = append(m.info.EOS, int32(id))
	}
	if ck.Generation != nil {
		if ids := ck.Generation.EOSTokenIDs(); len(ids) > 0 {
			m.info.EOS = m.info.EOS[:0]
			for _, id := range ids {
				m.info.EOS = append(m.info.EOS, int32(id))
			}
		}
	}

	l := newLoader(ck, be, q, &m.info)
	attnBias := c.AttentionBias != nil && *c.AttentionBias
	mlpBias := c.MLPBias != nil && *c.MLPBias
	qd, kvd := m.heads*m.headDim, m.kvHeads*m.headDim
	m.embed = l.matrix("model.embed_tokens", V, H)
	m.layers = make([]llamaLayer, c.NumHiddenLayers)
	for i := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		L := &m.layers[i]
		L.attnNorm = l.vector(p+"input_layernorm.weight", H)
		L.q = l.matrix(p+"self_attn.q_proj", qd, H)
		L.k = l.matrix(p+"self_attn.k_proj", kvd, H)
		L.v = l.matrix(p+"self_attn.v_proj", kvd, H)
		L.o = l.matrix(p+"self_attn.o_proj", H, qd)
		L.qb = l.optVector(p+"self_attn.q_proj.bias", qd, attnBias)
		L.kb = l.optVector(p+"self_attn.k_proj.bias", kvd, attnBias)
		L.vb = l.optVector(p+"self_attn.v_proj.bias", kvd, attnBias)
		L.ob = l.optVector(p+"self_attn.o_proj.bias", H, attnBias)
		L.qNorm = l.optVector(p+"self_attn.q_norm.weight", m.headDim, qwen3)
		L.kNorm = l.optVector(p+"self_attn.k_norm.weight", m.headDim, qwen3)
		L.mlpNorm = l.vector(p+"post_attention_layernorm.weight", H)
		L.gate = l.matrix(p+"mlp.gate_proj", I, H)
		L.up = l.matrix(p+"mlp.up_proj", I, H)
		L.down = l.matrix(p+"mlp.down_proj", H, I)
		L.gateB = l.optVector(p+"mlp.gate_proj.bias", I, mlpBias)
		L.upB = l.optVector(p+"mlp.up_proj.bias", I, mlpBias)
		L.downB = l.optVector(p+"mlp.down_proj.bias", H, mlpBias)
	}
	m.norm = l.vector("model.norm.weight", H)
	if c.TiedEmbeddings() {
		m.head = m.embed
	} else {
		m.head = l.matrix("lm_head", V, H)
	}
	if l.err != nil {
		return nil, l.err
	}
	m.info.DecodeBytes = m.info.WeightBytes
	if !c.TiedEmbeddings() {
		m.info.DecodeBytes -= m.embed.Bytes()
	}
	return m, nil
}

// Info implements Model.
func (m *Llama) Info() *Info { return &m.info }

// Close implements Model.
func (m *Llama) Close() error { return m.ck.Close() }

// Forward implements Model.
func (m *Llama) Forward(b *backend.Batch, cache backend.KVCache, rows []int32) backend.Tensor {
	be, a := m.be, m.acts(len(b.Tokens), len(rows))
	be.Embed(a.h, m.embed, b.Tokens)
	for i := range m.layers {
		L := &m.layers[i]

		// attention block
		be.RMSNorm(a.x, a.h, L.attnNorm, m.eps)
		m.linear(a.q, a.x, L.q, L.qb)
		m.linear(a.k, a.x, L.k, L.kb)
		m.linear(a.v, a.x, L.v, L.vb)
		if L.qNorm != nil {
			be.RMSNorm(a.q, a.q, L.qNorm, m.eps)
			be.RMSNorm(a.k, a.k, L.kNorm, m.eps)
		}
		be.RoPE(a.q, m.heads, m.headDim, 0, &m.rope, b.Pos)
		be.RoPE(a.k, m.kvHeads, m.headDim, 0, &m.rope, b.Pos)
		be.Attention(a.att, a.q, a.k, a.v, cache, i, b, m.scale)
		m.linear(a.x, a.att, L.o, L.ob)
		be.Add(a.h, a.x)

		// feed-forward block
		be.RMSNorm(a.x, a.h, L.mlpNorm, m.eps)
		m.linear(a.gate, a.x, L.gate, L.gateB)
		m.linear(a.up, a.x, L.up, L.upB)
		be.SiLUMul(a.gate, a.gate, a.up)
		m.linear(a.x, a.gate, L.down, L.downB)
		be.Add(a.h, a.x)
	}
	be.CopyRows(a.last, a.h, rows)
	be.RMSNorm(a.last, a.last, m.norm, m.eps)
	be.MatMul(a.logits, a.last, m.head)
	return a.logits
}

// linear computes dst = x·Wᵀ (+ bias).
func (m *Llama) linear(dst, x backend.Tensor, w backend.Matrix, bias backend.Vector) {
	m.be.MatMul(dst, x, w)
	if bias != nil {
		m.be.AddBias(dst, bias)
	}
}

// acts returns activation buffers viewed at n rows (and outRows logits rows),
// growing the backing buffers when a batch is larger than any before.
func (m *Llama) acts(n, outRows int) *llamaActs {
	be, c := m.be, m.info.Hidden
	if m.act == nil || m.act.cap < max(n, outRows) {
		capRows := max(n, outRows, 1)
		I := m.layers[0].gate.Rows()
		m.act = &llamaActs{cap: capRows,
			h: be.NewTensor(capRows, c), x: be.NewTensor(capRows, c),
			q: be.NewTensor(capRows, m.heads*m.headDim), k: be.NewTensor(capRows, m.kvHeads*m.headDim),
			v: be.NewTensor(capRows, m.kvHeads*m.headDim), att: be.NewTensor(capRows, m.heads*m.headDim),
			gate: be.NewTensor(capRows, I), up: be.NewTensor(capRows, I),
			last: be.NewTensor(capRows, c), logits: be.NewTensor(capRows, m.info.Vocab),
		}
	}
	a := m.act
	return &llamaActs{cap: a.cap,
		h: be.View(a.h, n), x: be.View(a.x, n), q: be.View(a.q, n), k: be.View(a.k, n), v: be.View(a.v, n),
		att: be.View(a.att, n), gate: be.View(a.gate, n), up: be.View(a.up, n),
		last: be.View(a.last, outRows), logits: be.View(a.logits, outRows),
	}
}
