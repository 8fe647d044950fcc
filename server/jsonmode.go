package server

import "math"

// JSON mode (response_format {"type": "json_object"}) is constrained
// decoding: before each token is sampled, every token that cannot continue
// a valid JSON object is masked out, so the output is always a JSON object.
// Termination is guaranteed too: a token is allowed only if the object can
// still be closed within the tokens left (every closing byte — `"`, `}`,
// `]`, a digit — is a one-byte token in byte-level and byte-fallback
// vocabularies), and the sequence stops as soon as the object is complete.
// Runs of whitespace are bounded so that a model cannot stall in them.
//
// The recognizer is a pushdown automaton whose stack of open containers is
// a bit set, so its whole state is a small value that is copied to try
// each token.

const (
	jsonMaxDepth   = 64 // open containers
	jsonMaxSpace   = 20 // consecutive whitespace bytes
	jsonMaxLeading = 2  // whitespace bytes before the object
)

// parser modes: what the next byte may be.
const (
	jStart    uint8 = iota // before the top-level object
	jValue                 // a value (after ':' or ',' in an array)
	jArrFirst              // a value or ']' (after '[')
	jObjFirst              // a key or '}' (after '{')
	jKey                   // a key (after ',' in an object)
	jColon                 // ':' after a key
	jAfter                 // ',' or a closing bracket after a value
	jString                // inside a string
	jEscape                // after '\' in a string
	jUnicode               // in \uXXXX; sub counts the hex digits read
	jUTF8                  // in a multi-byte character; sub counts the bytes left
	jLiteral               // in true/false/null; lit picks it, sub counts the bytes read
	jNumMinus              // after '-'
	jNumZero               // after a leading 0
	jNumInt                // in the integer digits
	jNumDot                // after '.'
	jNumFrac               // in the fraction digits
	jNumE                  // after 'e' or 'E'
	jNumESign              // after the exponent's sign
	jNumExp                // in the exponent digits
	jDone                  // the object is complete
)

var jsonLiterals = [3]string{"true", "false", "null"}

// jsonState is the recognizer's state.
type jsonState struct {
	stack uint64 // bit i: container i is an object (else an array)
	depth uint8
	mode  uint8
	sub   uint8
	lit   uint8
	ws    uint8
	key   bool // the string being read is an object key
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func (s *jsonState) space() bool {
	if s.ws >= jsonMaxSpace {
		return false
	}
	s.ws++
	return true
}

func (s *jsonState) open(obj bool) bool {
	if s.depth >= jsonMaxDepth {
		return false
	}
	if obj {
		s.stack |= 1 << s.depth
	} else {
		s.stack &^= 1 << s.depth
	}
	s.depth++
	if obj {
		s.mode = jObjFirst
	} else {
		s.mode = jArrFirst
	}
	return true
}

func (s *jsonState) inObject() bool { return s.depth > 0 && s.stack&(1<<(s.depth-1)) != 0 }

func (s *jsonState) close(obj bool) bool {
	if s.depth == 0 || s.inObject() != obj {
		return false
	}
	s.depth--
	s.afterValue()
	return true
}

func (s *jsonState) afterValue() {
	if s.depth == 0 {
		s.mode = jDone
	} else {
		s.mode = jAfter
	}
}

// startValue begins a value with c.
func (s *jsonState) startValue(c byte) bool {
	switch {
	case c == '"':
		s.mode, s.key = jString, false
	case c == '{':
		return s.open(true)
	case c == '[':
		return s.open(false)
	case c == 't':
		s.mode, s.lit, s.sub = jLiteral, 0, 1
	case c == 'f':
		s.mode, s.lit, s.sub = jLiteral, 1, 1
	case c == 'n':
		s.mode, s.lit, s.sub = jLiteral, 2, 1
	case c == '-':
		s.mode = jNumMinus
	case c == '0':
		s.mode = jNumZero
	case c >= '1' && c <= '9':
		s.mode = jNumInt
	default:
		return false
	}
	return true
}

// push feeds one byte; false means the bytes so far are not the beginning
// of a JSON object (the state is then undefined).
func (s *jsonState) push(c byte) bool {
	if !isJSONSpace(c) {
		s.ws = 0
	}
	switch s.mode {
	case jStart:
		if isJSONSpace(c) {
			return s.ws < jsonMaxLeading && s.space()
		}
		return c == '{' && s.open(true)
	case jValue, jArrFirst:
		if isJSONSpace(c) {
			return s.space()
		}
		if c == ']' && s.mode == jArrFirst {
			return s.close(false)
		}
		return s.startValue(c)
	case jObjFirst, jKey:
		if isJSONSpace(c) {
			return s.space()
		}
		if c == '}' && s.mode == jObjFirst {
			return s.close(true)
		}
		if c == '"' {
			s.mode, s.key = jString, true
			return true
		}
		return false
	case jColon:
		if isJSONSpace(c) {
			return s.space()
		}
		if c == ':' {
			s.mode = jValue
			return true
		}
		return false
	case jAfter:
		switch {
		case isJSONSpace(c):
			return s.space()
		case c == ',':
			if s.inObject() {
				s.mode = jKey
			} else {
				s.mode = jValue
			}
			return true
		case c == '}':
			return s.close(true)
		case c == ']':
			return s.close(false)
		}
		return false
	case jString:
		switch {
		case c == '"':
			if s.key {
				s.mode = jColon
			} else {
				s.afterValue()
			}
		case c == '\\':
			s.mode = jEscape
		case c < 0x20:
			return false
		case c < 0x80:
		case c >= 0xC2 && c <= 0xDF:
			s.mode, s.sub = jUTF8, 1
		case c >= 0xE0 && c <= 0xEF:
			s.mode, s.sub = jUTF8, 2
		case c >= 0xF0 && c <= 0xF4:
			s.mode, s.sub = jUTF8, 3
		default:
			return false
		}
		return true
	case jUTF8:
		if c&0xC0 != 0x80 {
			return false
		}
		if s.sub--; s.sub == 0 {
			s.mode = jString
		}
		return true
	case jEscape:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			s.mode = jString
		case 'u':
			s.mode, s.sub = jUnicode, 0
		default:
			return false
		}
		return true
	case jUnicode:
		if !isHex(c) {
			return false
		}
		if s.sub++; s.sub == 4 {
			s.mode = jString
		}
		return true
	case jLiteral:
		lit := jsonLiterals[s.lit]
		if c != lit[s.sub] {
			return false
		}
		if s.sub++; int(s.sub) == len(lit) {
			s.afterValue()
		}
		return true
	case jNumMinus:
		switch {
		case c == '0':
			s.mode = jNumZero
		case c >= '1' && c <= '9':
			s.mode = jNumInt
		default:
			return false
		}
		return true
	case jNumZero, jNumInt, jNumFrac:
		switch {
		case c >= '0' && c <= '9' && s.mode != jNumZero:
			return true
		case c == '.' && s.mode != jNumFrac:
			s.mode = jNumDot
			return true
		case c == 'e' || c == 'E':
			s.mode = jNumE
			return true
		}
		return s.endNumber(c)
	case jNumDot:
		if c >= '0' && c <= '9' {
			s.mode = jNumFrac
			return true
		}
		return false
	case jNumE:
		switch {
		case c == '+' || c == '-':
			s.mode = jNumESign
		case c >= '0' && c <= '9':
			s.mode = jNumExp
		default:
			return false
		}
		return true
	case jNumESign:
		if c >= '0' && c <= '9' {
			s.mode = jNumExp
			return true
		}
		return false
	case jNumExp:
		if c >= '0' && c <= '9' {
			return true
		}
		return s.endNumber(c)
	}
	return false // jDone: nothing may follow
}

// endNumber ends a complete number (never top-level here) and feeds c to
// what follows it.
func (s *jsonState) endNumber(c byte) bool {
	s.mode = jAfter
	return s.push(c)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// need returns the fewest bytes that complete the object from this state.
func (s *jsonState) need() int {
	d := int(s.depth)
	str := func(extra int) int {
		if s.key {
			return extra + 1 + 2 + d // `"` `:0`
		}
		return extra + 1 + d
	}
	switch s.mode {
	case jStart:
		return 2
	case jDone:
		return 0
	case jValue, jNumMinus, jNumDot, jNumE, jNumESign:
		return 1 + d
	case jArrFirst, jObjFirst, jAfter, jNumZero, jNumInt, jNumFrac, jNumExp:
		return d
	case jKey:
		return 4 + d // `"":0`
	case jColon:
		return 2 + d
	case jString:
		return str(0)
	case jEscape:
		return str(1)
	case jUnicode:
		return str(4 - int(s.sub))
	case jUTF8:
		return str(int(s.sub))
	case jLiteral:
		return len(jsonLiterals[s.lit]) - int(s.sub) + d
	}
	return 0
}

// callSpec is the shape of a forced tool call after the prompt's prefix:
// one of names, then sep (which begins with the name's closing quote), then
// the arguments as a JSON object.
type callSpec struct {
	names []string // at most 64, each at most 255 bytes
	sep   string
}

// consState is the state of a constrained output: a function name and a
// separator (forced tool calls only), then a JSON object.
type consState struct {
	phase   uint8  // 0: name, 1: separator, 2: JSON object
	nameLen uint8  // name bytes read
	off     uint8  // separator bytes read
	cand    uint64 // names that match what was read
	js      jsonState
}

// jsonGuard constrains one sequence to a JSON object (or a forced tool
// call) within maxTokens. It runs on the engine's goroutine: mask before
// each token, accept after it.
type jsonGuard struct {
	vocab     *vocabBytes
	call      *callSpec // nil: JSON mode
	state     consState
	maxTokens int // the sequence's token budget
	generated int
	failed    bool   // no token could continue: the constraint gave up
	allow     []bool // scratch
}

func newJSONGuard(v *vocabBytes, maxTokens int, call *callSpec) *jsonGuard {
	g := &jsonGuard{vocab: v, maxTokens: maxTokens, call: call}
	if call == nil {
		g.state.phase = 2
	} else {
		g.state.cand = 1<<len(call.names) - 1
	}
	return g
}

func (g *jsonGuard) push(st *consState, c byte) bool {
	switch st.phase {
	case 0:
		names := g.call.names
		if c == g.call.sep[0] { // the separator begins with the name's closing quote
			for i, n := range names {
				if st.cand&(1<<i) != 0 && len(n) == int(st.nameLen) {
					st.cand, st.phase, st.off = 1<<i, 1, 1
					if len(g.call.sep) == 1 {
						st.phase = 2
					}
					return true
				}
			}
			return false
		}
		var next uint64
		for i, n := range names {
			if st.cand&(1<<i) != 0 && len(n) > int(st.nameLen) && n[st.nameLen] == c {
				next |= 1 << i
			}
		}
		if next == 0 {
			return false
		}
		st.cand = next
		st.nameLen++
		return true
	case 1:
		if c != g.call.sep[st.off] {
			return false
		}
		if st.off++; int(st.off) == len(g.call.sep) {
			st.phase = 2
		}
		return true
	}
	return st.js.push(c)
}

func (g *jsonGuard) need(st *consState) int {
	switch st.phase {
	case 0:
		best := -1
		for i, n := range g.call.names {
			if st.cand&(1<<i) != 0 && (best < 0 || len(n)-int(st.nameLen) < best) {
				best = len(n) - int(st.nameLen)
			}
		}
		return best + len(g.call.sep) + 2
	case 1:
		return len(g.call.sep) - int(st.off) + 2
	}
	return st.js.need()
}

// mask sets the logits of tokens that cannot continue the output (or could
// not complete it in time) to −Inf.
func (g *jsonGuard) mask(logits []float32) {
	if g.failed {
		return
	}
	left := g.maxTokens - g.generated - 1 // tokens after this one
	if cap(g.allow) < len(logits) {
		g.allow = make([]bool, len(logits))
	}
	allow := g.allow[:len(logits)]
	var first [256]int8 // 0 unknown, 1 ok, −1 bad
	allowed := 0
	for id := range logits {
		allow[id] = false
		b := g.vocab.bytes(int32(id))
		if len(b) == 0 {
			continue
		}
		f := &first[b[0]]
		if *f == 0 {
			st := g.state
			if g.push(&st, b[0]) {
				*f = 1
			} else {
				*f = -1
			}
		}
		if *f < 0 {
			continue
		}
		st := g.state
		ok := true
		for _, c := range b {
			if !g.push(&st, c) {
				ok = false
				break
			}
		}
		if ok && (left < 0 || g.need(&st) <= left) {
			allow[id] = true
			allowed++
		}
	}
	if allowed == 0 {
		// cannot happen with a vocabulary that has the one-byte tokens;
		// give up (accept ends the sequence) rather than sample from nothing
		g.failed = true
		return
	}
	ninf := float32(math.Inf(-1))
	for id, ok := range allow {
		if !ok {
			logits[id] = ninf
		}
	}
}

// accept advances the state past a generated token and reports whether the
// output is complete (or the constraint gave up).
func (g *jsonGuard) accept(id int32) bool {
	g.generated++
	if g.failed {
		return true
	}
	for _, c := range g.vocab.bytes(id) {
		if !g.push(&g.state, c) {
			g.failed = true
			return true
		}
	}
	return g.state.phase == 2 && g.state.js.mode == jDone
}
