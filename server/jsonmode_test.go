package server

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

func feed(s *jsonState, text string) bool {
	for i := 0; i < len(text); i++ {
		if !s.push(text[i]) {
			return false
		}
	}
	return true
}

func TestJSONStateAccepts(t *testing.T) {
	for _, doc := range []string{
		`{}`, ` {}`, `{"a":1}`, `{"a": [1, 2.5, -0.5e+3, true, false, null, "x\n\u00e9\"", {}, []]}`,
		"{\n  \"k\": {\"n\": [[], [{}]]},\n  \"é\": \"ü€😀\"\n}", `{"a":0,"b":-0,"c":1E9,"d":[0.0]}`,
	} {
		var s jsonState
		if !feed(&s, doc) || s.mode != jDone {
			t.Errorf("%q: rejected or incomplete (mode %d)", doc, s.mode)
		}
		if !json.Valid([]byte(doc)) {
			t.Fatalf("bad fixture %q", doc)
		}
	}
}

func TestJSONStateRejects(t *testing.T) {
	for _, doc := range []string{
		`[]`, `"x"`, `1`, `{a:1}`, `{"a" 1}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}x`,
		`{"a":1,}`, `{,}`, `{"a":[1,]}`, `{"a":[1}`, `{"a":1]`, `{"a":"\x"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}",
		`{} {}`, `{}x`, "   {}", `{"a":nul}`, "{\"a\":\"\xff\"}", "{\"a\":\"\xc3(\"}",
		"{" + strings.Repeat(" ", jsonMaxSpace+1) + "}",
	} {
		var s jsonState
		if feed(&s, doc) && s.mode == jDone {
			t.Errorf("%q: accepted", doc)
		}
	}
	// nesting is bounded
	var s jsonState
	if feed(&s, `{"a":`+strings.Repeat("[", jsonMaxDepth)) {
		t.Error("nesting beyond the limit accepted")
	}
}

// closeJSON writes the shortest completion of a state, the way need()
// counts it.
func closeJSON(s jsonState) string {
	var b strings.Builder
	for s.mode != jDone {
		var c byte
		switch s.mode {
		case jStart:
			c = '{'
		case jValue, jNumMinus, jNumDot, jNumE, jNumESign:
			c = '0'
		case jKey:
			c = '"'
		case jColon:
			c = ':'
		case jString, jEscape:
			if s.mode == jEscape {
				c = 'n'
			} else {
				c = '"'
			}
		case jUnicode:
			c = '0'
		case jUTF8:
			c = 0x80
		case jLiteral:
			c = jsonLiterals[s.lit][s.sub]
		default: // after a value or in an empty container: close it
			if s.inObject() {
				c = '}'
			} else {
				c = ']'
			}
		}
		if !s.push(c) {
			panic("closeJSON: byte rejected")
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TestJSONStateRandom walks random valid prefixes: need() is exactly the
// length of the shortest completion, and every completion is valid JSON.
func TestJSONStateRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`{}[]":,-+.0123456789eEtrufalsn \n\\/bu` + "aé\x80")
	for iter := range 3000 {
		var s jsonState
		var text []byte
		for range rng.IntN(60) {
			c := alphabet[rng.IntN(len(alphabet))]
			try := s
			if try.push(c) && try.mode != jDone {
				s = try
				text = append(text, c)
			}
		}
		rest := closeJSON(s)
		if len(rest) != s.need() {
			t.Fatalf("iter %d: %q: need %d, closing %q", iter, text, s.need(), rest)
		}
		full := string(text) + rest
		var obj map[string]any
		if err := json.Unmarshal([]byte(full), &obj); err != nil {
			t.Fatalf("iter %d: %q does not decode: %v", iter, full, err)
		}
	}
}

// TestJSONGuard drives the guard over a tiny vocabulary with adversarial
// logits: whatever the model prefers, the output is a JSON object within
// the token budget.
func TestJSONGuard(t *testing.T) {
	vocab := &vocabBytes{b: [][]byte{nil, []byte("{"), []byte("}"), []byte(`"`), []byte("a"), []byte(":"), []byte("1"), []byte(","),
		[]byte(" "), []byte("\n\n"), []byte(`{"x": [`), []byte("]"), []byte("hello world"), []byte("\\"), []byte("u")}}
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 500 {
		budget := 2 + rng.IntN(30)
		g := newJSONGuard(vocab, budget, nil)
		var out []byte
		for step := 0; ; step++ {
			if step >= budget {
				t.Fatalf("iter %d: budget %d exhausted: %q", iter, budget, out)
			}
			logits := make([]float32, len(vocab.b))
			for i := range logits {
				logits[i] = rng.Float32()
			}
			g.mask(logits)
			best := -1
			for i, l := range logits {
				if l > -1e30 && (best < 0 || l > logits[best]) {
					best = i
				}
			}
			if best < 0 || g.failed {
				t.Fatalf("iter %d: nothing allowed after %q", iter, out)
			}
			out = append(out, vocab.b[best]...)
			if g.accept(int32(best)) {
				break
			}
		}
		var obj map[string]any
		if err := json.Unmarshal(out, &obj); err != nil || g.failed {
			t.Fatalf("iter %d: %q: %v", iter, out, err)
		}
	}
}

// TestCallGuard: a forced call picks one of the names, then the separator,
// then an object.
func TestCallGuard(t *testing.T) {
	var b [][]byte
	for c := 0; c < 128; c++ {
		b = append(b, []byte{byte(c)})
	}
	b[0] = nil
	vocab := &vocabBytes{b: b}
	rng := rand.New(rand.NewPCG(5, 6))
	spec := &callSpec{names: []string{"get_weather", "get_time", "g"}, sep: `", "arguments": `}
	for iter := range 300 {
		g := newJSONGuard(vocab, 60, spec)
		var out []byte
		for {
			logits := make([]float32, len(b))
			for i := range logits {
				logits[i] = rng.Float32()
			}
			g.mask(logits)
			best := -1
			for i, l := range logits {
				if l > -1e30 && (best < 0 || l > logits[best]) {
					best = i
				}
			}
			out = append(out, b[best]...)
			if g.accept(int32(best)) {
				break
			}
		}
		name, rest, ok := strings.Cut(string(out), `"`)
		if !ok || (name != "get_weather" && name != "get_time" && name != "g") || !strings.HasPrefix(rest, `, "arguments": `) ||
			!json.Valid([]byte(strings.TrimPrefix(rest, `, "arguments": `))) || g.failed || len(out) > 60 {
			t.Fatalf("iter %d: %q", iter, out)
		}
	}
}
