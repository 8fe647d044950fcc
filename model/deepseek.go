package model

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/hf"
	"github.com/marlin-llm/marlin/quant"
)

// DeepSeek is the decoder of DeepseekV3ForCausalLM and Glm4MoeLiteForCausalLM
// (GLM-4.7-Flash): multi-head latent attention (MLA) and mixture-of-experts
// feed-forward blocks with sigmoid routing and shared experts.
//
// MLA compresses each token's keys and values into one latent vector c of
// kv_lora_rank numbers plus a rotary key part k_pe shared by all heads.
// The cache stores only [c, k_pe]. Per head h, the full key would be
// [W_UK[h]·c, k_pe] and the value W_UV[h]·c (W_UK, W_UV are kv_b_proj's
// rows); instead of expanding them we absorb W_UK into the query and W_UV
// into the output:
//
//	q_nope·(W_UK c) = (W_UKᵀ q_nope)·c        score = [W_UKᵀ q_nope, q_pe]·[c, k_pe]
//	o[h] = W_UV[h] · Σ_t p_t c_t              attention over latents, then one small matmul
//
// so attention runs like multi-query attention with one KV head of
// kv_lora_rank + rope numbers whose values are the first kv_lora_rank of
// them.
//
//	x = rmsnorm(h)
//	q = (rmsnorm(x·Wqa))·Wqb, or x·Wq        [heads, nope + rope]
//	c, k_pe = split(x·Wkva); c = rmsnorm(c)
//	q_pe, k_pe = rope(q_pe), rope(k_pe)
//	o = attention([W_UKᵀ q_nope, q_pe], cache += [c, k_pe]) per head, then W_UV
//	h += o·Wo
//	h += ffn(rmsnorm(h))                     (dense first layers, then experts + shared experts)
type DeepSeek struct {
	info                    Info
	be                      backend.Backend
	ck                      *hf.Checkpoint
	heads, nope, rope, vDim int
	lora                    int // kv_lora_rank
	eps, scale              float32
	rot                     backend.Rope

	embed  backend.Matrix
	layers []deepseekLayer
	norm   backend.Vector
	head   backend.Matrix
	s      *scratch
}

type deepseekLayer struct {
	attnNorm, mlpNorm backend.Norm
	qa, qb, q         backend.Matrix // q_a_proj and q_b_proj, or q_proj
	qaBias            backend.Vector
	qaNorm            backend.Norm
	kva               backend.Matrix // kv_a_proj_with_mqa
	kvaBias           backend.Vector
	kvNorm            backend.Vector
	ukT, uv           []backend.Matrix // per head: W_UKᵀ [lora, nope] and W_UV [v, lora]
	o                 backend.Matrix
	oBias             backend.Vector
	ffn               ffn
}

func newDeepSeek(ck *hf.Checkpoint, be backend.Backend, q *quant.Config) (Model, error) {
	c := ck.Config
	glm := c.Architecture() == "Glm4MoeLiteForCausalLM"
	m := &DeepSeek{be: be, ck: ck, heads: c.NumAttentionHeads, s: newScratch(be),
		nope: intOr(c.QKNopeHeadDim, -1), rope: intOr(c.QKRopeHeadDim, -1),
		vDim: intOr(c.VHeadDim, -1), lora: intOr(c.KVLoraRank, -1)}
	H, V, L := c.HiddenSize, c.VocabSize, c.NumHiddenLayers
	if H <= 0 || V <= 0 || L <= 0 || m.heads <= 0 || m.nope < 0 || m.rope <= 0 || m.vDim <= 0 || m.lora <= 0 {
		return nil, fmt.Errorf("%s: config.json: inconsistent or missing sizes (hidden %d, vocab %d, layers %d, heads %d, qk_nope_head_dim %d, qk_rope_head_dim %d, v_head_dim %d, kv_lora_rank %d)",
			ck.Dir, H, V, L, m.heads, m.nope, m.rope, m.vDim, m.lora)
	}
	if c.HiddenAct != "" && c.HiddenAct != "silu" {
		return nil, fmt.Errorf("%s: hidden_act %q is not supported (only silu)", ck.Dir, c.HiddenAct)
	}
	m.eps = 1e-6
	if c.RMSNormEps != nil {
		m.eps = float32(*c.RMSNormEps)
	}
	r, err := c.Rope()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ck.Dir, err)
	}
	if m.rot, err = ropeFor(r, m.rope); err != nil {
		return nil, fmt.Errorf("%s: %w", ck.Dir, err)
	}
	m.rot.Interleaved = c.RopeInterleave == nil || *c.RopeInterleave
	scale := 1 / math.Sqrt(float64(m.nope+m.rope))
	if r.Type != "default" && r.MScaleAllDim != 0 {
		ms := yarnMScale(r.Factor, r.MScaleAllDim)
		scale *= ms * ms
	}
	m.scale = float32(scale)
	m.info = baseInfo(c)
	m.info.KV = backend.KVSpec{Layers: L, KVHeads: 1, KeyDim: m.lora + m.rope, ValueDim: m.lora, ValueInKey: true}
	applyGeneration(&m.info, ck)

	l := newLoader(ck, be, q, &m.info)
	bias := c.AttentionBias != nil && *c.AttentionBias
	qd := m.heads * (m.nope + m.rope)
	qRank, compressed := c.QLoRARank()
	m.embed = l.matrix("model.embed_tokens", V, H)
	m.layers = make([]deepseekLayer, L)
	for i := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ly := &m.layers[i]
		ly.attnNorm = backend.Norm{W: l.vector(p+"input_layernorm.weight", H), Eps: m.eps}
		qa, kva := wspec{p + "self_attn.q_a_proj", qRank, H}, wspec{p + "self_attn.kv_a_proj_with_mqa", m.lora + m.rope, H}
		switch {
		case compressed && !bias:
			// q_a and kv_a multiply the same input: loaded together, one
			// product (MatMulN)
			ms := l.matrices(qa, kva)
			ly.qa, ly.kva = ms[0], ms[1]
		case compressed:
			ly.qa, ly.kva = l.matrix(qa.prefix, qa.out, qa.in), l.matrix(kva.prefix, kva.out, kva.in)
		default:
			ly.q, ly.kva = l.matrix(p+"self_attn.q_proj", qd, H), l.matrix(kva.prefix, kva.out, kva.in)
		}
		if compressed {
			ly.qaBias = l.optVector(p+"self_attn.q_a_proj.bias", qRank, bias)
			ly.qaNorm = backend.Norm{W: l.vector(p+"self_attn.q_a_layernorm.weight", qRank), Eps: m.eps}
			ly.qb = l.matrix(p+"self_attn.q_b_proj", qd, qRank)
		}
		ly.kvaBias = l.optVector(p+"self_attn.kv_a_proj_with_mqa.bias", m.lora+m.rope, bias)
		ly.kvNorm = l.vector(p+"self_attn.kv_a_layernorm.weight", m.lora)
		ly.ukT, ly.uv = m.absorbed(l, p+"self_attn.kv_b_proj")
		ly.o = l.matrix(p+"self_attn.o_proj", H, m.heads*m.vDim)
		ly.oBias = l.optVector(p+"self_attn.o_proj.bias", H, bias)
		ly.mlpNorm = backend.Norm{W: l.vector(p+"post_attention_layernorm.weight", H), Eps: m.eps}
		if ly.ffn, err = deepseekFFN(l, c, i, p, glm); err != nil {
			return nil, fmt.Errorf("%s: %w", ck.Dir, err)
		}
	}
	m.norm, m.head = l.outputHead(m.embed)
	if l.err != nil {
		return nil, l.err
	}
	return m, nil
}

// absorbed splits kv_b_proj ([heads·(nope+v), lora]) into each head's
// W_UKᵀ [lora, nope] (applied to the query) and W_UV [v, lora] (applied to
// the attention output), stored densely: in the checkpoint's type when it
// is a dense 16-bit or float32 one (exact copies), and in float16 when it
// is quantized — the dequantized values (q − z)·s rounded once more
// (relative 2^-11, far inside the quantization's own error), which halves
// what a decode step reads of them (at GLM-4.7-Flash's shape 18 MB a
// layer in float32, as much as its routed experts).
func (m *DeepSeek) absorbed(l *loader, prefix string) (ukT, uv []backend.Matrix) {
	w := l.weight(prefix, m.heads*(m.nope+m.vDim), m.lora)
	if w == nil {
		return nil, nil
	}
	dt := dtype.F32
	switch {
	case w.Format == quant.Dense && (w.DType == dtype.BF16 || w.DType == dtype.F16):
		dt = w.DType
	case w.Format != quant.Dense:
		dt = dtype.F16
	}
	row := make([]float32, m.lora)
	for h := range m.heads {
		uk := newDense(fmt.Sprintf("%s[head %d].uk_t", prefix, h), m.lora, m.nope, dt)
		v := newDense(fmt.Sprintf("%s[head %d].uv", prefix, h), m.vDim, m.lora, dt)
		for j := range m.nope + m.vDim {
			w.DequantizeRow(row, h*(m.nope+m.vDim)+j)
			for c, x := range row {
				if j < m.nope {
					uk.set(c, j, x) // transposed
				} else {
					v.set(j-m.nope, c, x)
				}
			}
		}
		ukT = append(ukT, l.load(uk.w))
		uv = append(uv, l.load(v.w))
	}
	return ukT, uv
}

// deepseekFFN loads layer i's feed-forward block: a dense SwiGLU for the
// first layers, then routed experts with shared experts.
func deepseekFFN(l *loader, c *hf.Config, i int, p string, glm bool) (ffn, error) {
	H, E := c.HiddenSize, c.Experts()
	sparse := E > 0
	switch {
	case len(c.MLPLayerTypes) > 0:
		if i >= len(c.MLPLayerTypes) {
			return nil, fmt.Errorf("config.json: mlp_layer_types has %d entries for %d layers", len(c.MLPLayerTypes), c.NumHiddenLayers)
		}
		sparse = c.MLPLayerTypes[i] == "sparse"
	case c.FirstKDenseReplace != nil:
		sparse = sparse && i >= *c.FirstKDenseReplace
	case glm:
		sparse = sparse && i >= 1 // transformers' default: the first layer dense
	}
	if !sparse {
		return loadMLP(l, p+"mlp.", projNames, H, c.IntermediateSize, false), nil
	}
	topK, moeI, shared := 0, 0, 0
	if c.NumExpertsPerTok != nil {
		topK = *c.NumExpertsPerTok
	}
	if c.MoEIntermediateSize != nil {
		moeI = *c.MoEIntermediateSize
	}
	if c.NSharedExperts != nil {
		shared = *c.NSharedExperts
	}
	groups, topGroups := 1, 1
	if c.NGroup != nil {
		groups = *c.NGroup
	}
	if c.TopKGroup != nil {
		topGroups = *c.TopKGroup
	}
	if topK <= 0 || topK > E || moeI <= 0 || groups <= 0 || E%groups != 0 || topGroups <= 0 || topGroups > groups {
		return nil, fmt.Errorf("config.json: %d experts, %d per token, moe_intermediate_size %d, %d groups (top %d)", E, topK, moeI, groups, topGroups)
	}
	route := backend.Router{TopK: topK, Sigmoid: true, Normalize: c.NormTopKProb == nil || *c.NormTopKProb,
		Groups: groups, TopKGroups: topGroups, GroupMaskZero: !glm, Scale: 1}
	if c.RoutedScalingFactor != nil {
		route.Scale = float32(*c.RoutedScalingFactor)
	}
	if l.has(p + "mlp.gate.e_score_correction_bias") {
		route.Bias = l.vector(p+"mlp.gate.e_score_correction_bias", E)
	}
	f := &moe{router: l.matrix(p+"mlp.gate", E, H), route: route,
		experts: loadExperts(l, p+"mlp.experts.", projNames, E, topK, H, moeI)}
	if shared > 0 {
		// the shared experts as one network of shared·moe_intermediate_size,
		// each matrix loaded on its own like the routed experts', so that a
		// backend can run it as one more slot of their launches
		sp, I := p+"mlp.shared_experts.", moeI*shared
		f.shared = &backend.Expert{Gate: l.matrix(sp+projNames[0], I, H), Up: l.matrix(sp+projNames[1], I, H), Down: l.matrix(sp+projNames[2], H, I)}
	}
	return f, nil
}

// Info implements Model.
func (m *DeepSeek) Info() *Info { return &m.info }

// Close implements Model.
func (m *DeepSeek) Close() error { return m.ck.Close() }

// Forward implements Model.
func (m *DeepSeek) Forward(b *backend.Batch, cache backend.KVCache, rows []int32) backend.Tensor {
	be, s, n := m.be, m.s, len(b.Tokens)
	hd, kd := m.nope+m.rope, m.lora+m.rope // query head as stored; latent key
	h, x := s.get("h", n, m.info.Hidden), s.get("x", n, m.info.Hidden)
	q := s.get("q", n, m.heads*hd)
	kva, key := s.get("kva", n, kd), s.get("key", n, kd)
	qf, olat, ov := s.get("qf", n, m.heads*kd), s.get("olat", n, m.heads*m.lora), s.get("ov", n, m.heads*m.vDim)

	be.Embed(h, m.embed, b.Tokens)
	for i := range m.layers {
		L := &m.layers[i]

		// attention block: q and the latent kva from x = rmsnorm(h)
		switch {
		case L.q != nil:
			be.RMSNorm(x, h, L.attnNorm.W, L.attnNorm.Eps)
			be.MatMul(q, x, L.q)
			linear(be, kva, x, L.kva, L.kvaBias)
		case L.qaBias == nil && L.kvaBias == nil:
			qa := s.get("qa", n, L.qa.Rows())
			be.MatMulN([]backend.Tensor{qa, kva}, h, []backend.Matrix{L.qa, L.kva}, &L.attnNorm)
			be.MatMulN([]backend.Tensor{q}, qa, []backend.Matrix{L.qb}, &L.qaNorm) // q = rmsnorm(qa)·W_qb
		default:
			be.RMSNorm(x, h, L.attnNorm.W, L.attnNorm.Eps)
			qa := s.get("qa", n, L.qa.Rows())
			linear(be, qa, x, L.qa, L.qaBias)
			be.RMSNorm(qa, qa, L.qaNorm.W, L.qaNorm.Eps)
			be.MatMul(q, qa, L.qb)
			linear(be, kva, x, L.kva, L.kvaBias)
		}
		be.HeadMatMul(qf, q, L.ukT, kd, hd) // q_lat = W_UKᵀ q_nope
		// key = [rmsnorm(c), rope(k_pe)]; q_pe rotated beside q_lat in qf
		be.MLAPrologue(key, qf, kva, q, L.kvNorm, m.eps, m.heads, m.nope, &m.rot, b.Pos)
		be.Attention(olat, qf, key, nil, cache, i, b, m.scale, nil)
		be.HeadMatMul(ov, olat, L.uv, m.vDim, m.lora) // o = W_UV o_lat
		residual(be, s, h, ov, L.o, L.oBias)

		// feed-forward block: h += ffn(rmsnorm(h))
		L.ffn.addTo(be, s, h, &L.mlpNorm)
	}
	return outputHead(be, s, h, rows, m.norm, m.eps, m.head)
}
