package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/engine"
)

// fuzzServer is an in-process server on a scripted model with a short
// context (so that any request is quick), the default tokenizer and the
// Hermes test template (tools are accepted).
func fuzzServer(t testing.TB) *Server {
	tok, ids := scriptTokenizer(t, "Hail", ", ", "good sir", ".")
	be := cpu.New(1)
	m := newScriptedModel(be, tok.VocabSize(), ids)
	m.info.ContextLength = 96
	e, err := engine.New(m, be, engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	tmpl := mustTemplate(t, hermesTemplate)
	s := New(Options{Logger: quietLogger(), MaxBodyBytes: 16 << 10})
	if err := s.SetModel(&Model{Name: "scripted", Engine: e, Tokenizer: tok, Template: tmpl}); err != nil {
		t.Fatal(err)
	}
	return s
}

// checkResponse checks the invariants of any answer to a request body: a
// known status (never 5xx), OpenAI's error object on errors, valid JSON or
// a well-formed event stream on success; malformed JSON is always a 400.
func checkResponse(t *testing.T, body []byte, rec *httptest.ResponseRecorder) {
	status, out := rec.Code, rec.Body.Bytes()
	switch status {
	case 200, 400, 404, 413:
	default:
		t.Fatalf("status %d for %q: %s", status, body, out)
	}
	if !json.Valid(body) && status != 400 && status != 413 {
		t.Fatalf("malformed JSON %q got %d", body, status)
	}
	if status != 200 {
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(out, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" ||
			rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("status %d for %q without an error object: %s", status, body, out)
		}
		return
	}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
		events, err := sseEvents(out)
		if err != nil {
			t.Fatalf("stream for %q: %v\n%s", body, err, out)
		}
		for _, ev := range events[:len(events)-1] {
			if strings.Contains(ev, `"error"`) {
				t.Fatalf("stream for %q ends with an error: %s", body, ev)
			}
		}
		return
	}
	var obj map[string]any
	if err := json.Unmarshal(out, &obj); err != nil || obj["choices"] == nil {
		t.Fatalf("200 for %q is not a completion: %s", body, out)
	}
}

func fuzzRequest(t *testing.T, s *Server, path string, body []byte) {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	checkResponse(t, body, rec)
}

var chatSeeds = []string{
	`{"model":"scripted","messages":[{"role":"user","content":"hi"}]}`,
	`{"messages":[{"role":"system","content":"x"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`,
	`{"messages":[{"role":"user","content":"hi"}],"temperature":0.7,"top_p":0.9,"seed":3,"n":2,"stop":["sir","."],"logprobs":true,"top_logprobs":2}`,
	`{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"},"max_tokens":20,"stream":true}`,
	`{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required","max_tokens":30}`,
	`{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
	`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","content":"ok"}]}`,
	`{"messages":[{"role":"developer","content":"x"}],"max_completion_tokens":3,"presence_penalty":1,"frequency_penalty":-1,"logit_bias":{"5":-100}}`,
	`{"messages":[{"role":"user","content":"hi"}],"temperature":"x"}`,
	`{"messages":[]}`, `{"messages":[{"role":"wizard"}]}`, `{"model":"other","messages":[{"role":"user","content":"hi"}]}`,
	`[]`, `null`, `{"messages":[{"role":"user","content":"hi"}],"n":1e400}`, `{"messages":"\ud800"}`,
}

// FuzzChatRequest: any body sent to /v1/chat/completions gets a well-formed
// answer with a sensible status; nothing panics.
func FuzzChatRequest(f *testing.F) {
	for _, s := range chatSeeds {
		f.Add([]byte(s))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) { fuzzRequest(t, s, "/v1/chat/completions", body) })
}

var completionSeeds = []string{
	`{"model":"scripted","prompt":"Hail"}`,
	`{"prompt":["a","b"],"n":2,"max_tokens":4,"echo":true,"stream":true,"stream_options":{"include_usage":true}}`,
	`{"prompt":[1,2,3],"logprobs":3,"stop":"sir","seed":9,"temperature":1.5}`,
	`{"prompt":[[1,2],[3]],"max_tokens":2,"return_token_ids":true}`,
	`{"prompt":"x","response_format":{"type":"json_object"},"max_tokens":12}`,
	`{"prompt":"x","suffix":"y"}`, `{"prompt":"x","echo":true,"logprobs":1}`, `{"prompt":[99999]}`, `{"prompt":["a",1]}`,
	`{"prompt":"x","best_of":2}`, `{"prompt":""}`, `{}`, `{"prompt":[]}`, `"x"`,
}

// FuzzCompletionRequest: the same for /v1/completions.
func FuzzCompletionRequest(f *testing.F) {
	for _, s := range completionSeeds {
		f.Add([]byte(s))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) { fuzzRequest(t, s, "/v1/completions", body) })
}
