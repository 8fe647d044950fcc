package server

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/marlin-llm/marlin/chat"
	"github.com/marlin-llm/marlin/engine"
	"github.com/marlin-llm/marlin/tokenizer"
)

// Model is what a Server serves.
type Model struct {
	// Name is the model's id in the API: /v1/models lists it and requests
	// must name it exactly (or leave "model" out).
	Name string
	// Engine generates. The Server submits to it and never closes it.
	Engine *engine.Engine
	// Tokenizer turns text into the model's token ids and back.
	Tokenizer *tokenizer.Tokenizer
	// Template renders chat messages into a prompt; nil makes chat
	// completions answer 400 (completions still work).
	Template *chat.Template
	// StopIDs end generation (they are not part of the output). Nil means
	// the model's end-of-sequence ids plus the tokenizer's EOS.
	StopIDs []int32
	// Created is the creation time /v1/models reports (default: when the
	// model was set).
	Created time.Time
}

// served is a Model with what the server derives from it.
type served struct {
	*Model
	vocab      int // the model's vocabulary (logits per token)
	ctxLen     int
	toolSyntax chat.ToolSyntax
	markers    map[int32]bool // special tokens kept in the text when parsing tool calls

	bytesOnce sync.Once
	bytes     *vocabBytes
}

func newServed(m *Model) (*served, error) {
	if m == nil || m.Engine == nil || m.Tokenizer == nil {
		return nil, errors.New("server: a Model needs an Engine and a Tokenizer")
	}
	if m.Name == "" {
		return nil, errors.New("server: a Model needs a Name")
	}
	info := m.Engine.Model().Info()
	s := &served{Model: m, vocab: info.Vocab, ctxLen: m.Engine.ContextLength(), markers: map[int32]bool{}}
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	if m.StopIDs == nil {
		m.StopIDs = append([]int32(nil), info.EOS...)
		if id, ok := m.Tokenizer.EOS(); ok && !slices.Contains(m.StopIDs, id) {
			m.StopIDs = append(m.StopIDs, id)
		}
	}
	if m.Template != nil {
		s.toolSyntax = chat.DetectToolSyntax(m.Template.Source())
		for _, t := range toolMarkers(s.toolSyntax) {
			if id, ok := m.Tokenizer.TokenID(t); ok && m.Tokenizer.IsSpecial(id) {
				s.markers[id] = true
			}
		}
	}
	return s, nil
}

// vocabBytes returns the token byte table, built on first use.
func (s *served) vocabBytes() *vocabBytes {
	s.bytesOnce.Do(func() { s.bytes = newVocabBytes(s.Tokenizer, s.vocab) })
	return s.bytes
}

// textDecoder turns generated ids into text as the client sees it: special
// tokens are dropped, except the tool-call markers when tool calls are
// parsed.
type textDecoder struct {
	tok  *tokenizer.Tokenizer
	dec  *tokenizer.StreamDecoder
	keep map[int32]bool
}

func (s *served) newDecoder(keepMarkers bool) *textDecoder {
	d := &textDecoder{tok: s.Tokenizer, dec: s.Tokenizer.NewStreamDecoder(true)}
	if keepMarkers {
		d.keep = s.markers
	}
	return d
}

func (d *textDecoder) next(id int32) string {
	if d.keep[id] {
		return d.dec.Flush() + d.tok.Token(id)
	}
	return d.dec.Next(id)
}

func (d *textDecoder) flush() string { return d.dec.Flush() }
