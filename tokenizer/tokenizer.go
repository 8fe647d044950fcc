package tokenizer

import (
	"unsafe"
)

// Tokenizer converts between text and token ids. Build one with Load,
// LoadGPT2 or LoadFile. It is safe for concurrent use.
type Tokenizer struct {
	vocab   []string         // id -> token text as stored in the vocabulary
	decText []string         // id -> text handed to the decoder
	present []bool           // id -> the id exists
	special []bool           // id -> special token
	ids     map[string]int32 // model vocabulary: text -> id

	added     map[string]*addedToken // added tokens by content
	addedByID map[int32]*addedToken
	rawMatch  *addedMatcher // added tokens matched in the raw text
	normMatch *addedMatcher // added tokens matched in the normalized text

	normalizer normalizer
	pre        *preTokenizer
	model      model
	cache      *wordCache

	prefix, suffix []int32 // ids Encode adds when addSpecial is set
	bos, eos       int32   // -1 when unknown
	dec            *decoder
}

func newTokenizer(n int) *Tokenizer {
	return &Tokenizer{
		vocab:     make([]string, n),
		ids:       make(map[string]int32, n),
		added:     make(map[string]*addedToken),
		addedByID: make(map[int32]*addedToken),
		rawMatch:  newAddedMatcher(),
		normMatch: newAddedMatcher(),
		bos:       -1,
		eos:       -1,
	}
}

// addAddedToken registers an added token; its matching pattern is set up
// by finish. A later token with the same id replaces an earlier one.
func (t *Tokenizer) addAddedToken(tok *addedToken) {
	if old, ok := t.addedByID[tok.id]; ok {
		delete(t.added, old.content)
	}
	t.addedByID[tok.id] = tok
	t.added[tok.content] = tok
	if int(tok.id) >= len(t.vocab) {
		t.vocab = append(t.vocab, make([]string, int(tok.id)+1-len(t.vocab))...)
	}
	t.vocab[tok.id] = tok.content
}

// finish builds the lookup tables once everything is loaded.
func (t *Tokenizer) finish() {
	t.present = make([]bool, len(t.vocab))
	t.special = make([]bool, len(t.vocab))
	for _, id := range t.ids {
		t.present[id] = true
	}
	t.rawMatch = newAddedMatcher()
	t.normMatch = newAddedMatcher()
	t.decText = t.vocab
	// Match in id order so that results do not depend on map order.
	for id := range t.vocab {
		tok, ok := t.addedByID[int32(id)]
		if !ok {
			continue
		}
		t.present[id] = true
		t.special[id] = tok.special
		if tok.normalized {
			pattern := tok.content
			if t.normalizer != nil {
				pattern = t.normalizer.normalize(pattern)
			}
			t.normMatch.add(pattern, tok)
			if pattern != tok.content {
				// Like Hugging Face, decode the normalized form (e.g.
				// "▁<unk>"), the exact inverse of what Encode matched.
				if &t.decText[0] == &t.vocab[0] {
					t.decText = append([]string(nil), t.vocab...)
				}
				t.decText[id] = pattern
			}
		} else {
			t.rawMatch.add(tok.content, tok)
		}
	}
	if t.pre != nil && len(t.pre.steps) > 0 {
		t.cache = &wordCache{}
	}
	if t.dec == nil {
		t.dec = &decoder{joinSpace: true}
	}
	t.dec.prepare(t.decText)
}

// Encode turns text into token ids. Added and special tokens written in
// the text (like "<|begin_of_text|>") are always recognised. With
// addSpecial, the tokens the post-processor or tokenizer_config.json ask
// for (usually BOS) are added.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int32 {
	ws := workspacePool.Get().(*workspace)
	defer workspacePool.Put(ws)
	out := make([]int32, 0, len(text)/3+4)
	if addSpecial {
		out = append(out, t.prefix...)
	}
	ws.segs = t.rawMatch.splitAdded(text, ws.segs[:0])
	segs := ws.segs
	for i := range segs {
		sg := segs[i]
		if sg.tok != nil {
			out = append(out, sg.tok.id)
			continue
		}
		out = t.encodeText(ws, text[sg.start:sg.end], sg.start == 0, out)
	}
	ws.segs = segs[:0]
	if addSpecial {
		out = append(out, t.suffix...)
	}
	return out
}

// encodeText normalizes and encodes text that holds no raw-matched added
// token. first reports that it starts the input.
func (t *Tokenizer) encodeText(ws *workspace, s string, first bool, out []int32) []int32 {
	if t.normalizer != nil {
		s = t.normalizer.normalize(s)
	}
	if t.normMatch.n == 0 {
		return t.encodePieces(ws, s, first, out)
	}
	subs := t.normMatch.splitAdded(s, nil)
	for _, sg := range subs {
		if sg.tok != nil {
			out = append(out, sg.tok.id)
			continue
		}
		out = t.encodePieces(ws, s[sg.start:sg.end], first && sg.start == 0, out)
	}
	return out
}

// encodePieces pre-tokenizes normalized text and runs the model.
func (t *Tokenizer) encodePieces(ws *workspace, s string, first bool, out []int32) []int32 {
	if s == "" {
		return out
	}
	if t.pre == nil {
		return t.model.encode(ws, s, false, out)
	}
	raw := t.pre.byteLevel
	cache := t.cache
	t.pre.run(s, first, func(piece string) {
		if cache != nil && len(piece) <= cacheMaxLen {
			if ids, ok := cache.get(piece); ok {
				out = append(out, ids...)
				return
			}
			n := len(out)
			out = t.model.encode(ws, piece, raw, out)
			cache.put(piece, append([]int32(nil), out[n:]...))
			return
		}
		out = t.model.encode(ws, piece, raw, out)
	})
	return out
}

// VocabSize returns one more than the largest token id, counting added
// tokens. (A model's embedding table may be larger.)
func (t *Tokenizer) VocabSize() int { return len(t.vocab) }

// TokenID returns the id of a token written as it is in the vocabulary
// (for byte-level models that is the byte-level form, e.g. "Ġthe").
func (t *Tokenizer) TokenID(token string) (int32, bool) {
	if tok, ok := t.added[token]; ok {
		return tok.id, true
	}
	id, ok := t.ids[token]
	return id, ok
}

// Token returns the vocabulary text of id, or "" when there is no such id.
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.vocab) {
		return ""
	}
	return t.vocab[id]
}

// TokenBytes returns the bytes id stands for in the middle of a text (for
// byte-level models the raw bytes, for SentencePiece models with "▁"
// turned into a space). It returns nil for unknown ids.
func (t *Tokenizer) TokenBytes(id int32) []byte {
	if id < 0 || int(id) >= len(t.vocab) || !t.present[id] {
		return nil
	}
	d := t.dec
	b := d.data[d.off[id]:d.off[id+1]]
	return append([]byte(nil), b...)
}

// BOS returns the beginning-of-sequence token, when known.
func (t *Tokenizer) BOS() (int32, bool) { return t.bos, t.bos >= 0 }

// EOS returns the end-of-sequence token, when known.
func (t *Tokenizer) EOS() (int32, bool) { return t.eos, t.eos >= 0 }

// IsSpecial reports whether id is a special token (BOS, EOS, control
// tokens and other added tokens marked special), which Decode skips when
// asked to.
func (t *Tokenizer) IsSpecial(id int32) bool {
	return id >= 0 && int(id) < len(t.special) && t.special[id]
}

// AddedSpecial returns the ids Encode puts before and after the text when
// addSpecial is set.
func (t *Tokenizer) AddedSpecial() (prefix, suffix []int32) {
	return append([]int32(nil), t.prefix...), append([]int32(nil), t.suffix...)
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
