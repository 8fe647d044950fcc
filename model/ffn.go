package model

import (
	"fmt"

	"github.com/marlin-llm/marlin/backend"
)

// scratch hands out named activation buffers viewed at the current batch
// size, growing the backing tensor when a batch is larger than any before.
type scratch struct {
	be   backend.Backend
	bufs map[string]backend.Tensor
	sels map[int]backend.Selection // by top-k
}

func newScratch(be backend.Backend) *scratch {
	return &scratch{be: be, bufs: map[string]backend.Tensor{}, sels: map[int]backend.Selection{}}
}

// get returns the buffer name viewed as [rows, cols].
func (s *scratch) get(name string, rows, cols int) backend.Tensor {
	t, ok := s.bufs[name]
	if !ok || t.Rows() < rows || t.Cols() != cols {
		t = s.be.NewTensor(max(rows, 1), cols)
		s.bufs[name] = t
	}
	return s.be.View(t, rows)
}

// ffn is a feed-forward block f, added to the residual stream: h +=
// f(rmsnorm(h)), the norm given.
type ffn interface {
	addTo(be backend.Backend, s *scratch, h backend.Tensor, norm *backend.Norm)
}

// normed returns rmsnorm(h) in the scratch buffer "x".
func normed(be backend.Backend, s *scratch, h backend.Tensor, norm *backend.Norm) backend.Tensor {
	x := s.get("x", h.Rows(), h.Cols())
	be.RMSNorm(x, h, norm.W, norm.Eps)
	return x
}

// mlp is the SwiGLU feed-forward network: down(silu(x·gate) ⊙ x·up).
type mlp struct {
	gate, up, down    backend.Matrix
	gateB, upB, downB backend.Vector // biases, nil when absent
}

func (f *mlp) addTo(be backend.Backend, s *scratch, h backend.Tensor, norm *backend.Norm) {
	M, I := h.Rows(), f.gate.Rows()
	g := s.get("mlp.gate", M, I)
	if f.gateB == nil && f.upB == nil {
		be.SwiGLU(g, h, f.gate, f.up, norm) // g = silu(x·Wgᵀ) ⊙ x·Wuᵀ, x = rmsnorm(h)
	} else {
		x, u := normed(be, s, h, norm), s.get("mlp.up", M, I)
		linear(be, g, x, f.gate, f.gateB)
		linear(be, u, x, f.up, f.upB)
		be.SiLUMul(g, g, u)
	}
	residual(be, s, h, g, f.down, f.downB) // h += g·Wdᵀ
}

// loadMLP loads a SwiGLU network under prefix with the given tensor names
// for the gate, up and down projections.
func loadMLP(l *loader, prefix string, names [3]string, hidden, inter int, bias bool) *mlp {
	gu := l.matrices(wspec{prefix + names[0], inter, hidden}, wspec{prefix + names[1], inter, hidden})
	f := &mlp{gate: gu[0], up: gu[1], down: l.matrix(prefix+names[2], hidden, inter)}
	f.gateB = l.optVector(prefix+names[0]+".bias", inter, bias)
	f.upB = l.optVector(prefix+names[1]+".bias", inter, bias)
	f.downB = l.optVector(prefix+names[2]+".bias", hidden, bias)
	return f
}

var projNames = [3]string{"gate_proj", "up_proj", "down_proj"}

// moe is a mixture-of-experts block: a router picks TopK experts per token,
// their outputs are summed with the routing weights, and shared experts
// (DeepSeek) are added for every token.
type moe struct {
	router  backend.Matrix
	route   backend.Router
	experts []backend.Expert
	shared  *backend.Expert // nil without shared experts
}

func (f *moe) addTo(be backend.Backend, s *scratch, h backend.Tensor, norm *backend.Norm) {
	x := s.get("x", h.Rows(), h.Cols())
	sel := s.selection(x.Rows(), f.route.TopK)
	be.Route(sel, x, h, norm, f.router, &f.route) // x = rmsnorm(h); each row's top-k experts by x·routerᵀ, and their weights
	be.ExpertsAdd(h, x, sel, f.experts, f.shared) // h += Σ w·expert(x) + shared(x)
}

// selection returns a backend Selection for rows rows, grown as needed.
func (s *scratch) selection(rows, k int) backend.Selection {
	if t, ok := s.sels[k]; ok && t.Rows() >= rows {
		return t
	}
	t := s.be.NewSelection(rows, k)
	s.sels[k] = t
	return t
}

// loadExperts loads n experts named prefix.N.<names>, of which topK run
// for each token (what a decode step reads of them: Info.DecodeBytes).
func loadExperts(l *loader, prefix string, names [3]string, n, topK, hidden, inter int) []backend.Expert {
	ex := make([]backend.Expert, n)
	var bytes int64
	for e := range ex {
		p := fmt.Sprintf("%s%d.", prefix, e)
		ex[e] = backend.Expert{
			Gate: l.matrix(p+names[0], inter, hidden),
			Up:   l.matrix(p+names[1], inter, hidden),
			Down: l.matrix(p+names[2], hidden, inter),
		}
		for _, m := range []backend.Matrix{ex[e].Gate, ex[e].Up, ex[e].Down} {
			if m != nil {
				bytes += m.Bytes()
			}
		}
	}
	l.idleExpertBytes += bytes * int64(n-topK) / int64(n)
	return ex
}

// residual adds a projection to the residual stream: h += x·Wᵀ (+ bias),
// in one product where there is no bias.
func residual(be backend.Backend, s *scratch, h, x backend.Tensor, w backend.Matrix, bias backend.Vector) {
	if bias == nil {
		be.MatMulAdd(h, x, w)
		return
	}
	y := s.get("residual", h.Rows(), h.Cols())
	linear(be, y, x, w, bias)
	be.Add(h, y)
}

// addBias adds bias to every row of dst (nothing when bias is nil).
func addBias(be backend.Backend, dst backend.Tensor, bias backend.Vector) {
	if bias != nil {
		be.AddBias(dst, bias)
	}
}

// linear computes dst = x·Wᵀ (+ bias).
func linear(be backend.Backend, dst, x backend.Tensor, w backend.Matrix, bias backend.Vector) {
	be.MatMul(dst, x, w)
	addBias(be, dst, bias)
}
