package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// Kinds of decoding steps (Hugging Face decoders).
const (
	decReplace = iota
	decByteFallback
	decFuse
	decStrip
	decMetaspace
	decByteLevel
)

// decodeStep is one decoder of a chain.
type decodeStep struct {
	kind int

	// decReplace
	from    string
	pattern matcher // regex pattern; nil for a literal
	to      string

	// decStrip
	content    rune
	start      int
	stop       int
	sequential bool // after Fuse: strips the whole output, not each token

	// decMetaspace
	replacement string
	dropFirst   bool // prepend_scheme is not "never"
}

// decoder turns tokens into bytes. Every step works token by token; a
// Strip after Fuse acts on the start and end of the whole output, and
// Metaspace treats the first token specially, so those are applied with
// the position in mind.
type decoder struct {
	steps []decodeStep
	// joinSpace puts a space between tokens (no decoder configured).
	joinSpace bool

	// Set up by prepare.
	seqStart, seqStop int  // leading/trailing chars a sequential Strip removes
	seqContent        rune // the character it removes
	firstDiffers      bool // the first token decodes differently
	data              []byte
	off               []int32 // piece of id i is data[off[i]:off[i+1]]
}

// prepare precomputes the decoded bytes of every token when it is not
// the first one.
func (d *decoder) prepare(vocab []string) {
	fused := false
	for _, st := range d.steps {
		switch st.kind {
		case decFuse:
			fused = true
		case decStrip:
			if fused {
				d.seqStart += st.start
				d.seqStop += st.stop
				d.seqContent = st.content
			}
		case decMetaspace:
			if st.dropFirst {
				d.firstDiffers = true
			}
		}
	}
	if d.joinSpace {
		d.firstDiffers = true
	}
	d.off = make([]int32, len(vocab)+1)
	d.data = d.data[:0]
	for i, tok := range vocab {
		d.off[i] = int32(len(d.data))
		d.data = append(d.data, d.apply(tok, 1)...)
	}
	d.off[len(vocab)] = int32(len(d.data))
}

// apply runs the per-token steps on tok, the idx-th decoded token.
func (d *decoder) apply(tok string, idx int) string {
	if d.joinSpace && idx > 0 {
		tok = " " + tok
	}
	fused := false
	for i := range d.steps {
		st := &d.steps[i]
		switch st.kind {
		case decReplace:
			if st.pattern != nil {
				tok = replaceAll(st.pattern, tok, st.to)
			} else if st.from != "" {
				tok = strings.ReplaceAll(tok, st.from, st.to)
			}
		case decByteFallback:
			if b, ok := parseByteFallback(tok); ok {
				tok = string([]byte{b})
			}
		case decFuse:
			fused = true
		case decStrip:
			if !fused {
				tok = stripRune(tok, st.content, st.start, st.stop)
			}
		case decMetaspace:
			if idx == 0 && st.dropFirst {
				tok = strings.ReplaceAll(tok, st.replacement, "")
			} else {
				tok = strings.ReplaceAll(tok, st.replacement, " ")
			}
		case decByteLevel:
			if b, ok := byteLevelDecode(nil, tok); ok {
				tok = string(b)
			}
		}
	}
	return tok
}

// replaceAll replaces every match of m in s.
func replaceAll(m matcher, s, content string) string {
	return replaceNormalizer{pattern: m, content: content}.normalize(s)
}

// stripRune removes up to start leading and stop trailing c characters.
func stripRune(s string, c rune, start, stop int) string {
	for ; start > 0; start-- {
		r, n := utf8.DecodeRuneInString(s)
		if n == 0 || r != c {
			break
		}
		s = s[n:]
	}
	for ; stop > 0; stop-- {
		r, n := utf8.DecodeLastRuneInString(s)
		if n == 0 || r != c {
			break
		}
		s = s[:len(s)-n]
	}
	return s
}

// decodeState is the position-dependent part of decoding.
type decodeState struct {
	idx    int // tokens decoded so far
	budget int // leading characters the sequential Strip may still remove
}

// piece returns the bytes of token id at the current position and
// advances the state. ok is false for ids that decode to nothing
// (unknown ids, skipped special tokens).
func (t *Tokenizer) piece(id int32, skipSpecial bool, st *decodeState) (string, bool) {
	if id < 0 || int(id) >= len(t.vocab) || !t.present[id] {
		return "", false
	}
	if skipSpecial && t.special[id] {
		return "", false
	}
	d := t.dec
	var p string
	if st.idx == 0 && d.firstDiffers {
		p = d.apply(t.decText[id], 0)
	} else {
		b := d.data[d.off[id]:d.off[id+1]]
		p = unsafeString(b)
	}
	if st.idx == 0 {
		st.budget = d.seqStart
	}
	st.idx++
	if st.budget > 0 {
		for st.budget > 0 {
			r, n := utf8.DecodeRuneInString(p)
			if n == 0 || r != d.seqContent {
				break
			}
			p = p[n:]
			st.budget--
		}
		if p != "" {
			st.budget = 0
		}
	}
	return p, true
}

// Decode turns ids back into text. Ids out of range are skipped; with
// skipSpecial, special tokens (BOS, EOS, control tokens) are left out.
// The result holds raw bytes: invalid UTF-8 made by byte tokens is kept as
// is rather than replaced.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) string {
	var st decodeState
	var b []byte
	for _, id := range ids {
		p, ok := t.piece(id, skipSpecial, &st)
		if ok {
			b = append(b, p...)
		}
	}
	s := string(b)
	if t.dec.seqStop > 0 {
		s = stripRune(s, t.dec.seqContent, 0, t.dec.seqStop)
	}
	return s
}

// StreamDecoder decodes ids one at a time, for streaming generated text.
// The concatenation of everything Next and Flush return equals Decode of
// all the ids, and no chunk ends inside a UTF-8 character: bytes of an
// unfinished character are held back until it completes (or until Flush).
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	st          decodeState
	pending     []byte
}

// NewStreamDecoder returns a StreamDecoder that starts a new sequence.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial}
}

// Next decodes one more id and returns the text that is now complete,
// possibly "".
func (d *StreamDecoder) Next(id int32) string {
	p, ok := d.t.piece(id, d.skipSpecial, &d.st)
	if !ok || p == "" {
		return ""
	}
	d.pending = append(d.pending, p...)
	keep := incompleteTail(d.pending)
	if d.t.dec.seqStop > 0 {
		// Trailing characters a final Strip may remove wait for more text.
		k := keep
		c := string(d.t.dec.seqContent)
		for n := 0; n < d.t.dec.seqStop && strings.HasSuffix(unsafeString(d.pending[:len(d.pending)-k]), c); n++ {
			k += len(c)
		}
		keep = k
	}
	out := string(d.pending[:len(d.pending)-keep])
	d.pending = append(d.pending[:0], d.pending[len(d.pending)-keep:]...)
	return out
}

// Flush returns whatever is still held back (an unfinished UTF-8
// character is returned as its raw bytes) and ends the sequence: the next
// id starts a new one.
func (d *StreamDecoder) Flush() string {
	s := string(d.pending)
	if d.t.dec.seqStop > 0 {
		s = stripRune(s, d.t.dec.seqContent, 0, d.t.dec.seqStop)
	}
	d.pending = d.pending[:0]
	d.st = decodeState{}
	return s
}

// incompleteTail returns how many bytes at the end of b are the start of
// a UTF-8 character that more bytes could still complete.
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < 0x80 {
			return 0
		}
		if c < 0xC0 {
			continue // continuation byte: look further back
		}
		need := 0
		switch {
		case c >= 0xC2 && c <= 0xDF:
			need = 2
		case c >= 0xE0 && c <= 0xEF:
			need = 3
		case c >= 0xF0 && c <= 0xF4:
			need = 4
		default:
			return 0
		}
		if k >= need {
			return 0
		}
		tail := b[len(b)-k:]
		if k >= 2 {
			lo, hi := byte(0x80), byte(0xBF)
			switch c {
			case 0xE0:
				lo = 0xA0
			case 0xED:
				hi = 0x9F
			case 0xF0:
				lo = 0x90
			case 0xF4:
				hi = 0x8F
			}
			if tail[1] < lo || tail[1] > hi {
				return 0
			}
		}
		return k
	}
	return 0
}
