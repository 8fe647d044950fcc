package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marlin-llm/marlin/defaultmodel"
	"github.com/marlin-llm/marlin/engine"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

type errorCase struct {
	name, path, body string
	status           int
	param            string // "" when the error names no field
	msg              string // a substring of the message
}

var longText = strings.Repeat("To be, or not to be, that is the question. ", 200)

var errorCases = []errorCase{
	// malformed bodies
	{"malformed JSON", "/v1/chat/completions", `{"messages": [`, 400, "", "malformed JSON"},
	{"trailing garbage", "/v1/chat/completions", `{"messages": []} x`, 400, "", "malformed JSON"},
	{"not an object", "/v1/chat/completions", `[1, 2]`, 400, "", "must be a JSON object"},
	{"empty body", "/v1/chat/completions", ``, 400, "", "empty"},
	// wrong types
	{"temperature type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, 400, "temperature", "temperature: expected a number, got a string"},
	{"max_tokens type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}`, 400, "max_tokens", "max_tokens: expected an integer"},
	{"max_tokens fraction", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1.5}`, 400, "max_tokens", "expected an integer, got the number 1.5"},
	{"stream type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stream":"yes"}`, 400, "stream", "stream: expected a boolean"},
	{"stream_options type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":1}}`, 400, "stream_options.include_usage", "expected a boolean"},
	{"stop type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stop":5}`, 400, "stop", "stop: expected a string or an array of strings, got a number"},
	{"stop item type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stop":["a",5]}`, 400, "stop", "stop[1]: expected a string"},
	{"too many stops", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]}`, 400, "stop", "at most 16"},
	// out of range
	{"temperature high", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"temperature":2.5}`, 400, "temperature", "between 0 and 2"},
	{"temperature negative", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"temperature":-1}`, 400, "temperature", "between 0 and 2"},
	{"top_p", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"top_p":1.5}`, 400, "top_p", "between 0 and 1"},
	{"n zero", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":0}`, 400, "n", "n 0 is out of range"},
	{"n large", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":1000}`, 400, "n", "between 1 and 16"},
	{"max_tokens zero", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, 400, "max_tokens", "at least 1"},
	{"max_completion_tokens", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":-3}`, 400, "max_completion_tokens", "at least 1"},
	{"top_logprobs", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}`, 400, "top_logprobs", "between 0 and 20"},
	{"top_logprobs without logprobs", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}`, 400, "top_logprobs", "needs logprobs"},
	{"presence_penalty", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"presence_penalty":3}`, 400, "presence_penalty", "between -2 and 2"},
	{"frequency_penalty", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"frequency_penalty":-2.5}`, 400, "frequency_penalty", "between -2 and 2"},
	{"logit_bias key", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"logit_bias":{"abc":1}}`, 400, "logit_bias", "not a token id"},
	{"logit_bias value", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"logit_bias":{"5":101}}`, 400, "logit_bias", "between -100 and 100"},
	{"stream_options without stream", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`, 400, "stream_options", "only allowed when stream is true"},
	// messages
	{"no messages", "/v1/chat/completions", `{"model":"marlin-shakespeare"}`, 400, "messages", "messages is required"},
	{"empty messages", "/v1/chat/completions", `{"messages":[]}`, 400, "messages", "must not be empty"},
	{"messages not array", "/v1/chat/completions", `{"messages":"hi"}`, 400, "messages", "expected an array of messages, got a string"},
	{"message not object", "/v1/chat/completions", `{"messages":["hi"]}`, 400, "messages", "messages[0]: expected an object"},
	{"unknown role", "/v1/chat/completions", `{"messages":[{"role":"wizard","content":"hi"}]}`, 400, "messages", `unknown role "wizard"`},
	{"missing role", "/v1/chat/completions", `{"messages":[{"content":"hi"}]}`, 400, "messages", "messages[0].role is required"},
	{"content type", "/v1/chat/completions", `{"messages":[{"role":"user","content":42}]}`, 400, "messages", "messages[0].content: expected a string or an array of content parts, got a number"},
	{"missing content", "/v1/chat/completions", `{"messages":[{"role":"user"}]}`, 400, "messages", "messages[0].content is required"},
	{"image part", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x"}}]}]}`, 400, "messages", "text only"},
	{"part without text", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"text"}]}]}`, 400, "messages", "messages[0].content[0].text: expected a string"},
	{"tool without id", "/v1/chat/completions", `{"messages":[{"role":"tool","content":"42"}]}`, 400, "messages", "tool_call_id is required"},
	{"bad tool_calls", "/v1/chat/completions", `{"messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":{}}}]}]}`, 400, "messages", "arguments: expected a string"},
	// model and context
	{"unknown model", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, 404, "model", `the model "gpt-4o" does not exist`},
	{"prompt too long", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + longText + `"}]}`, 400, "messages", "context is 512 tokens"},
	// features
	{"json_schema", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}`, 400, "response_format", "json_schema\" is not supported"},
	{"response_format type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"xml"}}`, 400, "response_format", `got "xml"`},
	{"tools without syntax", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}`, 400, "tools", "defines no tool-call syntax"},
	{"tool type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"code","function":{"name":"f"}}]}`, 400, "tools", `"code" is not supported`},
	{"tool_choice unknown", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, 400, "tool_choice", `"g", which is not in tools`},
	{"json mode budget", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"},"max_tokens":1}`, 400, "max_tokens", "too small for response_format json_object"},
	{"response_format type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":"json"}`, 400, "response_format", "expected an object"},
	{"tool_choice string", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"tool_choice":"sometimes"}`, 400, "tool_choice", `tool_choice "sometimes"`},

	// completions
	{"no prompt", "/v1/completions", `{"max_tokens":3}`, 400, "prompt", "prompt is required"},
	{"prompt type", "/v1/completions", `{"prompt":{"text":"hi"}}`, 400, "prompt", "got an object"},
	{"empty prompt array", "/v1/completions", `{"prompt":[]}`, 400, "prompt", "empty array"},
	{"token out of vocabulary", "/v1/completions", `{"prompt":[1,2,99999]}`, 400, "prompt", "prompt[2]: token id 99999 is outside the vocabulary (0 to 2047)"},
	{"negative token", "/v1/completions", `{"prompt":[[1],[-1]]}`, 400, "prompt", "prompt[1][0]: token id -1"},
	{"mixed prompt", "/v1/completions", `{"prompt":["a",[1]]}`, 400, "prompt", "prompt[1]: expected a string"},
	{"suffix", "/v1/completions", `{"prompt":"a","suffix":"b"}`, 400, "suffix", "suffix is not supported"},
	{"echo with logprobs", "/v1/completions", `{"prompt":"a","echo":true,"logprobs":1}`, 400, "echo", "echo together with logprobs is not supported"},
	{"best_of", "/v1/completions", `{"prompt":"a","best_of":3}`, 400, "best_of", "best_of is not supported"},
	{"completion logprobs range", "/v1/completions", `{"prompt":"a","logprobs":30}`, 400, "logprobs", "between 0 and 20"},
	{"completion prompt too long", "/v1/completions", `{"prompt":"` + longText + `"}`, 400, "prompt", "context is 512 tokens"},
	{"too many sequences", "/v1/completions", `{"prompt":["a","b","c","d","e"],"n":4}`, 400, "prompt", "at most 16 per request"},
	{"completion unknown model", "/v1/completions", `{"model":"davinci","prompt":"a"}`, 404, "model", `"davinci" does not exist`},
	{"completion max_tokens", "/v1/completions", `{"prompt":"a","max_tokens":0}`, 400, "max_tokens", "at least 1"},
}

// TestErrors: every malformed or unsupported request gets its status and
// OpenAI's error object naming the field, never a 500.
func TestErrors(t *testing.T) {
	s := newDefaultServer(t, Options{}, engine.Config{})
	c := s.client()
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := s.post(t, tc.path, tc.body)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			msg, param := errorMessage(t, body)
			if !strings.Contains(msg, tc.msg) || param != tc.param {
				t.Errorf("message %q (param %q), want it to contain %q (param %q)", msg, param, tc.msg, tc.param)
			}
			// the same body sent by the official client: it surfaces status, message and param
			err := c.Post(context.Background(), strings.TrimPrefix(tc.path, "/v1/"), nil, nil, option.WithRequestBody("application/json", []byte(tc.body)))
			var ae *openai.Error
			if !errors.As(err, &ae) || ae.StatusCode != tc.status || !strings.Contains(ae.Message, tc.msg) || ae.Param != tc.param {
				t.Errorf("through the client: %v %+v", err, ae)
			}
		})
	}

	t.Run("method", func(t *testing.T) {
		resp, err := http.Get(s.url + "/v1/chat/completions")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		if msg, _ := errorMessage(t, b.Bytes()); !strings.Contains(msg, "method GET is not allowed") {
			t.Errorf("message %q", msg)
		}
		if code, body, _ := s.post(t, "/v1/models", `{}`); code != 405 {
			t.Errorf("POST /v1/models: %d %s", code, body)
		}
	})
	t.Run("unknown path", func(t *testing.T) {
		code, body := s.get(t, "/v2/everything")
		if msg, _ := errorMessage(t, body); code != 404 || !strings.Contains(msg, "unknown path /v2/everything") {
			t.Errorf("%d %s", code, body)
		}
		code, body = s.get(t, "/v1/models/nope")
		if msg, _ := errorMessage(t, body); code != 404 || !strings.Contains(msg, `"nope" does not exist`) {
			t.Errorf("%d %s", code, body)
		}
	})

	// typed requests through the official client
	t.Run("client", func(t *testing.T) {
		ctx := context.Background()
		check := func(err error, status int, msg string) {
			t.Helper()
			var ae *openai.Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an API error", err)
			}
			if ae.StatusCode != status || !strings.Contains(ae.Message, msg) {
				t.Errorf("status %d message %q, want %d %q", ae.StatusCode, ae.Message, status, msg)
			}
		}
		p := userChat("hi")
		p.Temperature = openai.Float(3)
		_, err := c.Chat.Completions.New(ctx, p)
		check(err, 400, "temperature 3 is out of range")

		p = userChat("hi")
		p.Model = "gpt-5"
		_, err = c.Chat.Completions.New(ctx, p)
		check(err, 404, `the model "gpt-5" does not exist`)

		p = userChat(longText)
		_, err = c.Chat.Completions.New(ctx, p)
		check(err, 400, "context is 512 tokens")

		p = userChat("hi")
		p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "x"}}}
		_, err = c.Chat.Completions.New(ctx, p)
		check(err, 400, "json_schema")

		stream := c.Chat.Completions.NewStreaming(ctx, func() openai.ChatCompletionNewParams { q := userChat("hi"); q.N = openai.Int(99); return q }())
		for stream.Next() {
		}
		check(stream.Err(), 400, "n 99 is out of range")

		cp := completionParams("a")
		cp.Suffix = openai.String("b")
		_, err = c.Completions.New(ctx, cp)
		check(err, 400, "suffix is not supported")

		_, err = c.Models.Get(ctx, "nope")
		check(err, 404, "does not exist")
		m, err := c.Models.Get(ctx, defaultmodel.Name)
		if err != nil || m.ID != defaultmodel.Name {
			t.Errorf("models.get: %v %v", err, m)
		}
		list, err := c.Models.List(ctx)
		if err != nil || len(list.Data) != 1 || list.Data[0].ID != defaultmodel.Name || list.Data[0].OwnedBy != "marlin" {
			t.Errorf("models.list: %v %v", err, list)
		}
	})
}

// TestBodyLimit: a body over the limit is 413, declared or streamed.
func TestBodyLimit(t *testing.T) {
	s := newDefaultServer(t, Options{MaxBodyBytes: 1024}, engine.Config{})
	big := `{"messages":[{"role":"user","content":"` + strings.Repeat("a", 2000) + `"}]}`
	code, body, _ := s.post(t, "/v1/chat/completions", big)
	if msg, _ := errorMessage(t, body); code != 413 || !strings.Contains(msg, "exceeds the limit of 1024 bytes") {
		t.Errorf("%d %s", code, body)
	}
	// no Content-Length: the limit applies while reading
	req, _ := http.NewRequest("POST", s.url+"/v1/completions", struct{ *strings.Reader }{strings.NewReader(big)})
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked body: %d", resp.StatusCode)
	}
	// the official client surfaces it
	c := s.client()
	_, err = c.Chat.Completions.New(context.Background(), userChat(strings.Repeat("a", 2000)))
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 413 || !strings.Contains(ae.Message, "exceeds the limit") {
		t.Errorf("client: %v", err)
	}
}

// TestAuth: with an API key, /v1/ needs "Authorization: Bearer KEY";
// /health and /metrics do not.
func TestAuth(t *testing.T) {
	s := newDefaultServer(t, Options{APIKey: "sekret"}, engine.Config{})
	body := `{"prompt":"a","max_tokens":1}`
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "sekret"}, {"Authorization", "Basic sekret"}} {
		code, b, hdr := s.post(t, "/v1/completions", body, h...)
		if msg, _ := errorMessage(t, b); code != 401 || !strings.Contains(msg, "API key") || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("header %v: %d %s", h, code, b)
		}
	}
	if code, b, _ := s.post(t, "/v1/completions", body, "Authorization", "Bearer sekret"); code != 200 {
		t.Errorf("right key: %d %s", code, b)
	}
	if code, _ := s.get(t, "/health"); code != 200 {
		t.Errorf("/health with auth on: %d", code)
	}
	c := s.client()
	_, err := c.Completions.New(context.Background(), completionParams("a"))
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Message != "invalid API key" {
		t.Errorf("client with a wrong key: %v", err)
	}
	keyed := s.client(option.WithAPIKey("sekret"))
	if _, err := keyed.Completions.New(context.Background(), completionParams("a")); err != nil {
		t.Errorf("client with the key: %v", err)
	}
}

// TestCORS: no CORS headers unless origins are configured; preflight
// requests of an allowed origin get 204.
func TestCORS(t *testing.T) {
	plain := newDefaultServer(t, Options{}, engine.Config{})
	req, _ := http.NewRequest("OPTIONS", plain.url+"/v1/chat/completions", nil)
	req.Header.Set("Origin", "http://evil.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.StatusCode != 405 {
		t.Errorf("without --cors: %d %v", resp.StatusCode, resp.Header)
	}

	s := newDefaultServer(t, Options{CORSOrigins: []string{"http://app.example"}, APIKey: "k"}, engine.Config{})
	req, _ = http.NewRequest("OPTIONS", s.url+"/v1/chat/completions", nil)
	req.Header.Set("Origin", "http://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	_, _, h := s.post(t, "/v1/completions", `{"prompt":"a","max_tokens":1}`, "Origin", "http://other.example", "Authorization", "Bearer k")
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin got %v", h)
	}
	code, _, h := s.post(t, "/v1/completions", `{"prompt":"a","max_tokens":1}`, "Origin", "http://app.example", "Authorization", "Bearer k")
	if code != 200 || h.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Errorf("allowed origin: %d %v", code, h)
	}
}

// TestPanicRecovered: a panicking handler answers 500 with the error
// object and logs the panic; the server keeps serving.
func TestPanicRecovered(t *testing.T) {
	var logs bytes.Buffer
	s := newDefaultServer(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, engine.Config{})
	s.routes["/boom"] = route{methods: map[string]http.HandlerFunc{"GET": func(http.ResponseWriter, *http.Request) { panic("kaboom") }}, allow: "GET"}
	code, body := s.get(t, "/boom")
	if msg, _ := errorMessage(t, body); code != 500 || !strings.Contains(msg, "internal server error") {
		t.Errorf("%d %s", code, body)
	}
	if !strings.Contains(logs.String(), "kaboom") || !strings.Contains(logs.String(), "panic") {
		t.Errorf("log: %s", logs.String())
	}
	if code, _ := s.get(t, "/health"); code != 200 {
		t.Errorf("after the panic /health is %d", code)
	}
}

// TestHealthBeforeModel: /health is 503 until the model is set, and the
// API says the model is loading.
func TestHealthBeforeModel(t *testing.T) {
	s := New(Options{Logger: quietLogger()})
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, path := range []string{"/health", "/v1/models"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("%s before the model: %d", path, resp.StatusCode)
		}
	}
	resp, _ := http.Post(ts.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("chat before the model: %d %v", resp.StatusCode, resp.Header)
	}
	ts2 := newDefaultServer(t, Options{}, engine.Config{})
	if code, body := ts2.get(t, "/health"); code != 200 || !strings.Contains(string(body), "ok") {
		t.Errorf("after: %d %s", code, body)
	}
}

// TestQueueFull: beyond engine.Config.MaxWaiting, requests get 429 with
// Retry-After, which the client sees.
func TestQueueFull(t *testing.T) {
	s := newSlowServer(t, Options{}, engine.Config{MaxSeqs: 1, MaxWaiting: 1}, 5*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := s.client()
	// one request runs, one waits
	for i := range 2 {
		p := completionParams("ROMEO:")
		p.Model, p.MaxTokens = "slow", openai.Int(500)
		go func() {
			stream := c.Completions.NewStreaming(ctx, p)
			for stream.Next() {
			}
		}()
		if !waitFor(10*time.Second, func() bool { st := s.engine.Stats(); return st.Running == 1 && st.Waiting == i }) {
			t.Fatalf("stats %+v", s.engine.Stats())
		}
	}
	code, body, h := s.post(t, "/v1/completions", `{"prompt":"a","max_tokens":1}`)
	if msg, _ := errorMessage(t, body); code != 429 || h.Get("Retry-After") != "1" || !strings.Contains(msg, "busy") {
		t.Errorf("%d %v %s", code, h, body)
	}
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "slow", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 {
		t.Errorf("client: %v", err)
	}
	cancel()
	if !waitFor(5*time.Second, func() bool { st := s.engine.Stats(); return st.Running == 0 && st.Waiting == 0 && st.KVBlocksUsed == 0 }) {
		t.Errorf("after the clients left: %+v", s.engine.Stats())
	}
}
