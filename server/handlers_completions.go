package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/marlin-llm/marlin/engine"
)

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Model  string          `json:"model"`
	Prompt json.RawMessage `json:"prompt"`
	samplingFields
	MaxTokens      *int            `json:"max_tokens"`
	Logprobs       *int            `json:"logprobs"`
	Echo           bool            `json:"echo"`
	Suffix         *string         `json:"suffix"`
	BestOf         *int            `json:"best_of"`
	ResponseFormat json.RawMessage `json:"response_format"` // extension, as in vLLM
}

// defaultCompletionTokens is max_tokens when a completion request leaves it
// out (OpenAI's default for this endpoint).
const defaultCompletionTokens = 16

// prompts reads prompt: a string, an array of strings, an array of token
// ids, or an array of arrays of token ids. It returns the token ids of each
// prompt and the text echo shows.
func (m *served) prompts(raw json.RawMessage) ([][]int32, []string, *apiError) {
	encode := func(text string) []int32 { return m.Tokenizer.Encode(text, true) }
	switch rawKind(raw) {
	case "", "null":
		return nil, nil, badRequest("prompt", "prompt is required: a string, an array of strings, or token ids")
	case "string":
		var s string
		json.Unmarshal(raw, &s)
		return [][]int32{encode(s)}, []string{s}, nil
	case "array":
	default:
		return nil, nil, badRequest("prompt", "prompt: expected a string, an array of strings or an array of token ids, got %s", article(rawKind(raw)))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, nil, badRequest("prompt", "prompt: %v", err)
	}
	if len(items) == 0 {
		return nil, nil, badRequest("prompt", "prompt must not be an empty array")
	}
	tokens := func(field string, list []json.RawMessage) ([]int32, *apiError) {
		if len(list) == 0 {
			return nil, badRequest("prompt", "%s: an empty array of token ids", field)
		}
		ids := make([]int32, len(list))
		for i, v := range list {
			var id int64
			if rawKind(v) != "number" || json.Unmarshal(v, &id) != nil {
				return nil, badRequest("prompt", "%s[%d]: expected a token id (an integer), got %s", field, i, string(v))
			}
			if id < 0 || id >= int64(m.vocab) {
				return nil, badRequest("prompt", "%s[%d]: token id %d is outside the vocabulary (0 to %d)", field, i, id, m.vocab-1)
			}
			ids[i] = int32(id)
		}
		return ids, nil
	}
	switch rawKind(items[0]) {
	case "number":
		ids, err := tokens("prompt", items)
		if err != nil {
			return nil, nil, err
		}
		return [][]int32{ids}, []string{m.Tokenizer.Decode(ids, true)}, nil
	case "string":
		var ps [][]int32
		var texts []string
		for i, it := range items {
			var s string
			if rawKind(it) != "string" || json.Unmarshal(it, &s) != nil {
				return nil, nil, badRequest("prompt", "prompt[%d]: expected a string like the other prompts, got %s", i, article(rawKind(it)))
			}
			ps, texts = append(ps, encode(s)), append(texts, s)
		}
		return ps, texts, nil
	case "array":
		var ps [][]int32
		var texts []string
		for i, it := range items {
			var list []json.RawMessage
			if rawKind(it) != "array" || json.Unmarshal(it, &list) != nil {
				return nil, nil, badRequest("prompt", "prompt[%d]: expected an array of token ids like the other prompts, got %s", i, article(rawKind(it)))
			}
			ids, err := tokens("prompt["+itoa(i)+"]", list)
			if err != nil {
				return nil, nil, err
			}
			ps, texts = append(ps, ids), append(texts, m.Tokenizer.Decode(ids, true))
		}
		return ps, texts, nil
	}
	return nil, nil, badRequest("prompt", "prompt[0]: expected a string, a token id or an array of token ids, got %s", article(rawKind(items[0])))
}

// parseCompletion validates a completion request.
func (s *Server) parseCompletion(body []byte, m *served) (*job, []string, bool, *apiError) {
	var req completionRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, nil, false, err
	}
	if err := checkModel(req.Model, m); err != nil {
		return nil, nil, false, err
	}
	p := &genParams{}
	if err := req.samplingFields.validate(p, m.vocab, s.opts.MaxSequences); err != nil {
		return nil, nil, false, err
	}
	var err *apiError
	if p.maxTokens, err = maxTokensField("max_tokens", req.MaxTokens, defaultCompletionTokens); err != nil {
		return nil, nil, false, err
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > maxTopLogprobs {
			return nil, nil, false, badRequest("logprobs", "logprobs %d is out of range: it must be between 0 and %d", *req.Logprobs, maxTopLogprobs)
		}
		if req.Echo {
			return nil, nil, false, unsupported("echo", "echo together with logprobs is not supported: the server does not compute the log-probabilities of prompt tokens")
		}
		p.logprobs = *req.Logprobs
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return nil, nil, false, unsupported("suffix", "suffix is not supported: model %s has no fill-in-the-middle template", quote(m.Name))
	}
	if req.BestOf != nil && *req.BestOf != p.n {
		return nil, nil, false, unsupported("best_of", "best_of is not supported (only best_of equal to n, %d, which returns every sequence)", p.n)
	}
	if err := parseResponseFormat(req.ResponseFormat, p); err != nil {
		return nil, nil, false, err
	}
	if p.jsonMode && p.maxTokens < 2 {
		return nil, nil, false, badRequest("max_tokens", "max_tokens %d is too small for response_format json_object: it needs at least 2 tokens", p.maxTokens)
	}
	prompts, texts, err := m.prompts(req.Prompt)
	if err != nil {
		return nil, nil, false, err
	}
	if len(prompts)*p.n > s.opts.MaxSequences {
		return nil, nil, false, badRequest("prompt", "%s × n = %d would start %d sequences; at most %d per request are allowed",
			plural(len(prompts), "prompt"), p.n, len(prompts)*p.n, s.opts.MaxSequences)
	}
	for i, ids := range prompts {
		if len(ids) == 0 {
			return nil, nil, false, badRequest("prompt", "prompt %d is empty and the model has no BOS token to start from", i)
		}
		if len(ids) >= m.ctxLen {
			return nil, nil, false, promptTooLong("prompt", len(ids), m.ctxLen)
		}
	}
	return &job{s: s, m: m, p: p, prompts: prompts}, texts, req.Echo, nil
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	m := s.current(w)
	if m == nil {
		return
	}
	body, aerr := readBody(w, r, s.opts.MaxBodyBytes)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	j, texts, echo, aerr := s.parseCompletion(body, m)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	j.ctx, j.start = ctx, start
	if aerr := j.submit(cancel); aerr != nil {
		writeError(w, aerr)
		return
	}
	defer s.metrics.duration.observeSince(start)
	id := "cmpl-" + randomID(24)
	w.Header().Set("X-Request-Id", id)
	prefix := func(c *choice) string {
		if echo {
			return texts[c.prompt]
		}
		return ""
	}
	if j.p.stream {
		s.streamCompletion(w, j, id, prefix)
		return
	}
	if err := j.run(jobHandlers{
		token: func(*choice, string, engine.Event) error { return nil },
		end:   func(*choice, string) error { return nil },
	}); err != nil {
		if e := cutShort(err, s.opts.RequestTimeout); e != nil {
			writeError(w, e)
		}
		return
	}
	resp := completion{ID: id, Object: "text_completion", Created: start.Unix(), Model: m.Name, SystemFingerprint: fingerprint,
		Usage: usageJSON(j.usage())}
	for _, c := range j.choices {
		pre := prefix(c)
		finish := c.finish
		ch := completionChoice{Text: pre + c.content.String(), Index: c.index, FinishReason: &finish}
		if j.p.logprobs >= 0 {
			ch.Logprobs = m.completionLogprobs(c.logprobs, len(pre))
		}
		if j.p.tokenIDs {
			ch.TokenIDs, ch.PromptTokenIDs = c.ids, j.prompts[c.prompt]
		}
		resp.Choices = append(resp.Choices, ch)
	}
	writeJSON(w, http.StatusOK, resp)
}

// completionLogprobs builds the legacy logprobs object; offsets count from
// offset (the echoed prompt's length).
func (m *served) completionLogprobs(evs []engine.Event, offset int) *completionLogprobs {
	lp := &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, ev := range evs {
		t := m.tokenText(ev.Token)
		lp.Tokens = append(lp.Tokens, t)
		lp.TokenLogprobs = append(lp.TokenLogprobs, clampLogprob(ev.Logprob))
		top := make(map[string]float64, len(ev.Top))
		for _, x := range ev.Top {
			tt := m.tokenText(x.ID)
			if _, dup := top[tt]; !dup {
				top[tt] = clampLogprob(x.Logprob)
			}
		}
		lp.TopLogprobs = append(lp.TopLogprobs, top)
		lp.TextOffset = append(lp.TextOffset, offset)
		offset += len(t)
	}
	return lp
}

func (s *Server) streamCompletion(w http.ResponseWriter, j *job, id string, prefix func(*choice) string) {
	m := j.m
	sse := newSSEWriter(w, s.opts.WriteTimeout)
	chunk := completion{ID: id, Object: "text_completion", Created: j.start.Unix(), Model: m.Name, SystemFingerprint: fingerprint,
		Choices: make([]completionChoice, 1)}
	if j.p.includeUsage {
		chunk.Usage = jsonNull
	}
	send := func(cc completionChoice) error {
		chunk.Choices[0] = cc
		return sse.event(&chunk)
	}
	offsets := make([]int, len(j.choices))
	for i, c := range j.choices {
		pre := prefix(c)
		offsets[i] = len(pre)
		if pre != "" {
			cc := completionChoice{Text: pre, Index: c.index}
			if j.p.tokenIDs {
				cc.PromptTokenIDs = j.prompts[c.prompt]
			}
			if err := send(cc); err != nil {
				return
			}
		}
	}
	sse.start()
	err := j.run(jobHandlers{
		token: func(c *choice, text string, ev engine.Event) error {
			if text == "" && j.p.logprobs < 0 && !j.p.tokenIDs {
				return nil
			}
			cc := completionChoice{Text: text, Index: c.index}
			if j.p.logprobs >= 0 {
				i := c.index
				cc.Logprobs = m.completionLogprobs([]engine.Event{ev}, offsets[i])
				offsets[i] += len(cc.Logprobs.Tokens[0])
			}
			if j.p.tokenIDs {
				cc.TokenIDs = []int32{ev.Token}
			}
			return send(cc)
		},
		end: func(c *choice, text string) error {
			finish := c.finish
			return send(completionChoice{Text: text, Index: c.index, FinishReason: &finish})
		},
		idle: func() error { return sse.comment("ping") },
	})
	if err != nil {
		if e := cutShort(err, s.opts.RequestTimeout); e != nil {
			sse.fail(e)
		}
		return
	}
	if j.p.includeUsage {
		chunk.Choices = []completionChoice{}
		chunk.Usage = usageJSON(j.usage())
		if sse.event(&chunk) != nil {
			return
		}
	}
	sse.done()
}
