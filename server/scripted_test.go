package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/chat"
	"github.com/marlin-llm/marlin/defaultmodel"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/model"
	"github.com/marlin-llm/marlin/tokenizer"
)

// scriptedModel is a model.Model that emits a script: its next token
// depends only on the last one — after script[i] comes script[i+1], after
// the script's last token EOS, after anything else script[0]. With the
// pieces of the script as added tokens of the tokenizer, a test decides
// exactly what the "model" writes.
type scriptedModel struct {
	be    backend.Backend
	info  model.Info
	next  map[int32]int32
	head  int32
	delay time.Duration // per forward pass: a slow model
}

func newScriptedModel(be backend.Backend, vocab int, script []int32) *scriptedModel {
	m := &scriptedModel{be: be, next: map[int32]int32{}, head: 0}
	m.info = model.Info{Architecture: "Scripted", Vocab: vocab, ContextLength: 512, BOS: 0, EOS: []int32{0}, Layers: 1,
		KV: backend.KVSpec{Layers: 1, KVHeads: 1, KeyDim: 1, ValueDim: 1}}
	if len(script) > 0 {
		m.head = script[0]
		for i := range script {
			if i+1 < len(script) {
				m.next[script[i]] = script[i+1]
			} else {
				m.next[script[i]] = 0
			}
		}
	}
	return m
}

func (m *scriptedModel) Info() *model.Info { return &m.info }
func (m *scriptedModel) Close() error      { return nil }

func (m *scriptedModel) Forward(b *backend.Batch, cache backend.KVCache, rows []int32) backend.Tensor {
	time.Sleep(m.delay)
	v := m.info.Vocab
	data := make([]float32, len(rows)*v)
	for i, r := range rows {
		nx, ok := m.next[b.Tokens[r]]
		if !ok {
			nx = m.head
		}
		row := data[i*v : (i+1)*v]
		for j := range row {
			row[j] = -5 - float32(j%7) // some spread, for top_logprobs
		}
		// A margin of at least 45 nats: sampled at the default
		// temperature 1, another token comes with probability below
		// vocab·e^-45 ≈ 1e-15 a step. (At 10 it was ~1e-3 a request,
		// and CI once drew one.)
		row[nx] = 40
	}
	out := m.be.NewTensor(len(rows), v)
	m.be.Write(out, data)
	return out
}

// scriptTokenizer is the default model's tokenizer with extra added
// (non-special) tokens, one per piece; it returns the pieces' ids.
func scriptTokenizer(t testing.TB, pieces ...string) (*tokenizer.Tokenizer, []int32) {
	t.Helper()
	_, base, _ := defaultFiles(t)
	tok, ids := scriptTokenizerFrom(base, pieces...)
	if tok == nil {
		t.Fatal("cannot build the script tokenizer")
	}
	return tok, ids
}

func loadDefaultTokenizer() (*tokenizer.Tokenizer, error) {
	dir, err := defaultmodel.Dir()
	if err != nil {
		return nil, err
	}
	return tokenizer.Load(dir)
}

func scriptTokenizerFrom(base *tokenizer.Tokenizer, pieces ...string) (*tokenizer.Tokenizer, []int32) {
	dir, err := defaultmodel.Dir()
	if err != nil {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, nil
	}
	var j map[string]any
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, nil
	}
	added := j["added_tokens"].([]any)
	ids := make([]int32, len(pieces))
	for i, p := range pieces {
		ids[i] = int32(base.VocabSize() + i)
		added = append(added, map[string]any{"id": ids[i], "content": p, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false})
	}
	j["added_tokens"] = added
	data, _ = json.Marshal(j)
	tok, err := tokenizer.LoadHFJSON(data)
	if err != nil {
		return nil, nil
	}
	return tok, ids
}

// newScriptedServer serves a scripted model that writes the pieces in
// order, with the given chat template.
func newScriptedServer(t testing.TB, opts Options, cfg engine.Config, template string, pieces ...string) *testServer {
	t.Helper()
	tok, ids := scriptTokenizer(t, pieces...)
	be := cpu.New(1)
	m := newScriptedModel(be, tok.VocabSize(), ids)
	e, err := engine.New(m, be, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var tmpl *chat.Template
	if template != "" {
		if tmpl, err = chat.New(template, map[string]string{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}); err != nil {
			t.Fatal(err)
		}
	}
	return startServer(t, opts, &Model{Name: "scripted", Engine: e, Tokenizer: tok, Template: tmpl}, func() {})
}

// newSlowServer serves a scripted model that writes "word " forever (until
// max_tokens or the context), taking delay per forward pass.
func newSlowServer(t testing.TB, opts Options, cfg engine.Config, delay time.Duration) *testServer {
	t.Helper()
	tok, ids := scriptTokenizer(t, "word ")
	be := cpu.New(1)
	m := newScriptedModel(be, tok.VocabSize(), ids)
	m.next[ids[0]] = ids[0]
	m.delay = delay
	e, err := engine.New(m, be, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, _, tmpl := defaultFiles(t)
	return startServer(t, opts, &Model{Name: "slow", Engine: e, Tokenizer: tok, Template: tmpl}, func() {})
}

func mustTemplate(t testing.TB, source string) *chat.Template {
	t.Helper()
	tmpl, err := chat.New(source, map[string]string{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}
