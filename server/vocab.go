package server

import "github.com/marlin-llm/marlin/tokenizer"

// vocabBytes holds the bytes each token id adds to the text, for
// constrained decoding: nil for special tokens and for ids the tokenizer
// does not know (a model's embedding table may be larger).
type vocabBytes struct {
	b [][]byte
}

func newVocabBytes(tok *tokenizer.Tokenizer, vocab int) *vocabBytes {
	v := &vocabBytes{b: make([][]byte, vocab)}
	for id := range vocab {
		if id >= tok.VocabSize() || tok.IsSpecial(int32(id)) {
			continue
		}
		v.b[id] = tok.TokenBytes(int32(id))
	}
	return v
}

func (v *vocabBytes) bytes(id int32) []byte {
	if id < 0 || int(id) >= len(v.b) {
		return nil
	}
	return v.b[id]
}
