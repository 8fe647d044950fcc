package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// spmModel is SentencePiece's BPE: adjacent symbols are merged while
// their concatenation is a piece, highest score first.
type spmModel struct {
	pieces       []spmPiece
	ids          map[string]int32 // normal, user-defined and unused pieces
	reserved     map[string]int32 // control, unknown and byte pieces
	unk          int32
	byteFallback bool
	byteIDs      [256]int32
	user         *addedMatcher // user-defined pieces, never merged
	hasUnused    bool
	chunks       *chunker
}

// spmSym is one symbol of the text being merged; start == end marks a
// symbol merged into its left neighbour.
type spmSym struct {
	start, end int32
	prev, next int32
	freeze     bool
}

// spmItem is a candidate merge.
type spmItem struct {
	score       float32
	left, right int32
	size        int32
}

// before orders by higher score, then leftmost.
func (a spmItem) before(b spmItem) bool {
	return a.score > b.score || (a.score == b.score && a.left < b.left)
}

func (m *spmModel) encode(ws *workspace, text string, raw bool, dst []int32) []int32 {
	if raw {
		ws.buf = byteLevelEncode(ws.buf[:0], text)
		text = string(ws.buf)
	}
	if m.chunks != nil {
		return m.chunks.encode(text, dst, func(chunk string, dst []int32) []int32 {
			return m.encodeChunk(ws, chunk, dst)
		})
	}
	return m.encodeChunk(ws, text, dst)
}

// encodeChunk runs the merges on one piece of normalized text.
func (m *spmModel) encodeChunk(ws *workspace, text string, dst []int32) []int32 {
	if text == "" {
		return dst
	}
	syms := ws.sp[:0]
	for i := 0; i < len(text); {
		n := 0
		freeze := false
		if m.user != nil {
			if t, e := m.user.longestAt(text, i); t != nil {
				n, freeze = e-i, true
			}
		}
		if n == 0 {
			_, n = utf8.DecodeRuneInString(text[i:])
		}
		k := int32(len(syms))
		syms = append(syms, spmSym{start: int32(i), end: int32(i + n), prev: k - 1, next: k + 1, freeze: freeze})
		i += n
	}
	syms[len(syms)-1].next = -1
	var revMerge map[string][2]string
	h := ws.sph[:0]
	tryPair := func(l, r int32) {
		if l < 0 || r < 0 || syms[l].freeze || syms[r].freeze {
			return
		}
		piece := text[syms[l].start:syms[r].end]
		id, ok := m.ids[piece]
		if !ok {
			return
		}
		h.push(spmItem{score: m.pieces[id].score, left: l, right: r, size: int32(len(piece))})
		if m.hasUnused && m.pieces[id].typ == spmUnused {
			if revMerge == nil {
				revMerge = make(map[string][2]string)
			}
			revMerge[piece] = [2]string{text[syms[l].start:syms[l].end], text[syms[r].start:syms[r].end]}
		}
	}
	for i := int32(0); i+1 < int32(len(syms)); i++ {
		tryPair(i, i+1)
	}
	for len(h) > 0 {
		top := h.pop()
		l, r := &syms[top.left], &syms[top.right]
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != top.size {
			continue
		}
		l.end = r.end
		l.next = r.next
		r.end = r.start
		if l.next >= 0 {
			syms[l.next].prev = top.left
		}
		tryPair(l.prev, top.left)
		tryPair(top.left, l.next)
	}
	ws.sp, ws.sph = syms, h
	for i := int32(0); i >= 0; i = syms[i].next {
		dst = m.emit(text[syms[i].start:syms[i].end], revMerge, dst)
	}
	return dst
}

// emit appends the id of one final symbol, splitting unused pieces back
// into their parts and unknown ones into byte pieces.
func (m *spmModel) emit(piece string, revMerge map[string][2]string, dst []int32) []int32 {
	id, ok := m.reserved[piece]
	if !ok {
		id, ok = m.ids[piece]
	}
	if ok && m.pieces[id].typ == spmUnused {
		if parts, found := revMerge[piece]; found {
			dst = m.emit(parts[0], revMerge, dst)
			return m.emit(parts[1], revMerge, dst)
		}
	}
	if ok && id != m.unk {
		return append(dst, id)
	}
	if m.byteFallback {
		for i := 0; i < len(piece); i++ {
			if m.byteIDs[piece[i]] < 0 {
				return append(dst, m.unk)
			}
		}
		for i := 0; i < len(piece); i++ {
			dst = append(dst, m.byteIDs[piece[i]])
		}
		return dst
	}
	return append(dst, m.unk)
}

// spmNormalizer is SentencePiece's normalization without a character map:
// invalid UTF-8 becomes U+FFFD, extra spaces may be removed, a dummy
// space is added and spaces become "▁".
type spmNormalizer struct {
	addDummyPrefix  bool
	removeExtraWS   bool
	escapeWS        bool
	treatWSAsSuffix bool
}

const spmSpace = "\u2581"

func (n *spmNormalizer) normalize(s string) string {
	if n.removeExtraWS {
		s = strings.TrimLeft(s, " ")
	}
	if s == "" {
		return ""
	}
	space := " "
	if n.escapeWS {
		space = spmSpace
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/2 + 3)
	if n.addDummyPrefix && !n.treatWSAsSuffix {
		b.WriteString(space)
	}
	prevSpace := n.removeExtraWS
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == ' ' {
			if prevSpace && n.removeExtraWS {
				continue
			}
			b.WriteString(space)
			prevSpace = true
			continue
		}
		prevSpace = false
		if r == utf8.RuneError && size == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i-size : i])
		}
	}
	out := b.String()
	if n.removeExtraWS {
		// Every trailing space symbol goes, a literal "▁" included.
		for strings.HasSuffix(out, space) {
			out = out[:len(out)-len(space)]
		}
	}
	if n.addDummyPrefix && n.treatWSAsSuffix {
		out += space
	}
	return out
}

// loadSPMFile builds a Tokenizer from a SentencePiece tokenizer.model.
func loadSPMFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := newSPMTokenizer(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// newSPMTokenizer builds a Tokenizer from a serialized ModelProto.
func newSPMTokenizer(data []byte) (*Tokenizer, error) {
	p, err := parseSPM(data)
	if err != nil {
		return nil, err
	}
	if len(p.pieces) == 0 {
		return nil, errors.New("SentencePiece model has no pieces (not a tokenizer.model file?)")
	}
	switch p.modelType {
	case spmModelBPE:
	case spmModelUnigram:
		return nil, errors.New("SentencePiece Unigram models are not supported (only BPE)")
	default:
		return nil, fmt.Errorf("SentencePiece model type %d is not supported (only BPE)", p.modelType)
	}
	if len(p.charsmap) > 0 {
		return nil, fmt.Errorf("SentencePiece normalizer %q with a precompiled character map is not supported", p.normName)
	}
	m := &spmModel{
		pieces:       p.pieces,
		ids:          make(map[string]int32, len(p.pieces)),
		reserved:     make(map[string]int32),
		unk:          -1,
		byteFallback: p.byteFallback,
	}
	for b := range m.byteIDs {
		m.byteIDs[b] = -1
	}
	t := newTokenizer(len(p.pieces))
	for i, pc := range p.pieces {
		id := int32(i)
		if pc.text == "" {
			return nil, fmt.Errorf("piece %d is empty", i)
		}
		t.vocab[i] = pc.text
		switch pc.typ {
		case spmNormal, spmUserDefined, spmUnused:
			if _, dup := m.ids[pc.text]; dup {
				return nil, fmt.Errorf("piece %d %q is defined twice", i, pc.text)
			}
			m.ids[pc.text] = id
			if pc.typ == spmUnused {
				m.hasUnused = true
			}
			if pc.typ == spmUserDefined {
				if m.user == nil {
					m.user = newAddedMatcher()
				}
				m.user.add(pc.text, &addedToken{id: id, content: pc.text})
			}
		case spmUnknown, spmControl, spmByte:
			if _, dup := m.reserved[pc.text]; dup {
				return nil, fmt.Errorf("piece %d %q is defined twice", i, pc.text)
			}
			m.reserved[pc.text] = id
			if pc.typ == spmUnknown {
				m.unk = id
			}
			if pc.typ == spmByte {
				b, ok := parseByteFallback(pc.text)
				if !ok {
					return nil, fmt.Errorf("byte piece %d %q is not of the form <0xNN>", i, pc.text)
				}
				m.byteIDs[b] = id
			}
			if pc.typ != spmByte {
				t.addAddedToken(&addedToken{id: id, content: pc.text, special: true})
			}
		default:
			return nil, fmt.Errorf("piece %d %q has unknown type %d", i, pc.text, pc.typ)
		}
		if _, ok := t.ids[pc.text]; !ok {
			t.ids[pc.text] = id
		}
	}
	if m.unk < 0 {
		return nil, errors.New("SentencePiece model has no unknown piece")
	}
	if p.escapeWS {
		m.chunks = newChunker(spmSpace, m.ids)
	}
	t.model = m
	t.normalizer = &spmNormalizer{
		addDummyPrefix:  p.addDummyPrefix,
		removeExtraWS:   p.removeExtraWS,
		escapeWS:        p.escapeWS,
		treatWSAsSuffix: p.treatWSAsSuffix,
	}
	// Decoding as Hugging Face's converted Llama tokenizers do: the dummy
	// space is dropped from the start (or the end, for models that put
	// whitespace after words).
	strip := decodeStep{kind: decStrip, content: ' ', start: 1}
	if p.treatWSAsSuffix {
		strip = decodeStep{kind: decStrip, content: ' ', stop: 1}
	}
	if !p.addDummyPrefix && !p.removeExtraWS {
		strip.start, strip.stop = 0, 0
	}
	t.dec = &decoder{steps: []decodeStep{
		{kind: decReplace, from: spmSpace, to: " "},
		{kind: decByteFallback},
		{kind: decFuse},
		strip,
	}}
	if p.bosID >= 0 && int(p.bosID) < len(p.pieces) {
		t.bos = p.bosID
		t.prefix = []int32{p.bosID}
	}
	if p.eosID >= 0 && int(p.eosID) < len(p.pieces) {
		t.eos = p.eosID
	}
	return t, nil
}
