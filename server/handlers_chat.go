package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/marlin-llm/marlin/chat"
	"github.com/marlin-llm/marlin/engine"
)

// chatRequest is the body of POST /v1/chat/completions.
type chatRequest struct {
	Model    string          `json:"model"`
	Messages json.RawMessage `json:"messages"`
	samplingFields
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	// ChatTemplateKwargs are extra template variables (extension, as in
	// vLLM), e.g. {"enable_thinking": false}.
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs"`
}

// forcedCallSyntax is how each tool-call syntax begins a call with the
// function name, and what follows the name up to the arguments object: a
// forced call (tool_choice "required" or a named function) is this prefix
// appended to the prompt, then the name and arguments under constrained
// decoding.
var forcedCallSyntax = map[chat.ToolSyntax][2]string{
	chat.ToolSyntaxHermes:  {"<tool_call>\n{\"name\": \"", `", "arguments": `},
	chat.ToolSyntaxLlama3:  {`{"name": "`, `", "parameters": `},
	chat.ToolSyntaxMistral: {`[TOOL_CALLS][{"name": "`, `", "arguments": `},
}

// parseChat validates a chat request and renders its prompt.
func (s *Server) parseChat(body []byte, m *served) (*job, *apiError) {
	var req chatRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, err
	}
	if err := checkModel(req.Model, m); err != nil {
		return nil, err
	}
	if m.Template == nil {
		return nil, badRequest("messages", "model %s has no chat template (tokenizer_config.json chat_template or chat_template.jinja); use /v1/completions", quote(m.Name))
	}
	msgs, err := normalizeMessages(req.Messages)
	if err != nil {
		return nil, err
	}
	p := &genParams{}
	if err := req.samplingFields.validate(p, m.vocab, s.opts.MaxSequences); err != nil {
		return nil, err
	}
	if p.maxTokens, err = maxTokensField("max_tokens", req.MaxTokens, 0); err != nil {
		return nil, err
	}
	if req.MaxCompletionTokens != nil {
		if p.maxTokens, err = maxTokensField("max_completion_tokens", req.MaxCompletionTokens, 0); err != nil {
			return nil, err
		}
	}
	if req.Logprobs != nil && *req.Logprobs {
		p.logprobs = 0
	}
	if req.TopLogprobs != nil {
		switch {
		case *req.TopLogprobs < 0 || *req.TopLogprobs > maxTopLogprobs:
			return nil, badRequest("top_logprobs", "top_logprobs %d is out of range: it must be between 0 and %d", *req.TopLogprobs, maxTopLogprobs)
		case p.logprobs < 0:
			return nil, badRequest("top_logprobs", "top_logprobs needs logprobs set to true")
		}
		p.logprobs = *req.TopLogprobs
	}
	if err := parseResponseFormat(req.ResponseFormat, p); err != nil {
		return nil, err
	}
	tools, err := validateTools(req.Tools, req.ToolChoice, m.toolSyntax, m.Name)
	if err != nil {
		return nil, err
	}
	text, rerr := m.Template.Render(chat.Input{Messages: msgs, Tools: tools.tools, AddGenerationPrompt: true, Vars: req.ChatTemplateKwargs})
	if rerr != nil {
		var re *chat.RenderError
		if errors.As(rerr, &re) && re.Raised {
			return nil, badRequest("messages", "the model's chat template rejected the messages: %s", re.Msg)
		}
		return nil, badRequest("messages", "rendering the chat template: %v", rerr)
	}
	j := &job{s: s, m: m, p: p, tools: tools}
	if tools.parse && (tools.choice == "required" || tools.named) {
		syn := forcedCallSyntax[m.toolSyntax]
		names := []string{tools.choice}
		if !tools.named {
			names = toolNames(tools.tools)
		}
		if len(names) > 64 {
			return nil, unsupported("tool_choice", "tool_choice \"required\" is supported with at most 64 tools (got %d)", len(names))
		}
		text += syn[0]
		j.call = &callSpec{names: names, sep: syn[1]}
		j.tools.parse = false
		p.jsonMode = false
		if need := newJSONGuard(nil, 0, j.call).need(&consState{cand: 1<<len(names) - 1}); p.maxTokens > 0 && p.maxTokens < need {
			return nil, badRequest("max_tokens", "max_tokens %d is too small for a forced tool call: it needs at least %d tokens", p.maxTokens, need)
		}
	}
	if p.jsonMode && p.maxTokens > 0 && p.maxTokens < 2 {
		return nil, badRequest("max_tokens", "max_tokens %d is too small for response_format json_object: it needs at least 2 tokens", p.maxTokens)
	}
	if req.ParallelToolCalls != nil && !*req.ParallelToolCalls {
		j.tools.single = true
	}
	ids := m.Tokenizer.Encode(text, false)
	if len(ids) == 0 {
		return nil, badRequest("messages", "the rendered prompt is empty")
	}
	if len(ids) >= m.ctxLen {
		return nil, promptTooLong("messages", len(ids), m.ctxLen)
	}
	j.prompts = [][]int32{ids}
	return j, nil
}

func toolNames(tools json.RawMessage) []string {
	var list []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	json.Unmarshal(tools, &list)
	names := make([]string, len(list))
	for i, t := range list {
		names[i] = t.Function.Name
	}
	return names
}

// parseResponseFormat reads response_format: text, or json_object (JSON
// mode). JSON schemas are not supported.
func parseResponseFormat(raw json.RawMessage, p *genParams) *apiError {
	if absent(raw) {
		return nil
	}
	var rf struct {
		Type any `json:"type"`
	}
	if rawKind(raw) != "object" || json.Unmarshal(raw, &rf) != nil {
		return badRequest("response_format", "response_format: expected an object such as {\"type\": \"json_object\"}, got %s", article(rawKind(raw)))
	}
	typ, _ := rf.Type.(string)
	switch typ {
	case "text":
	case "json_object":
		p.jsonMode = true
	case "json_schema":
		return unsupported("response_format", "response_format type \"json_schema\" is not supported; use {\"type\": \"json_object\"} (the output is then constrained to a JSON object, without a schema)")
	default:
		return badRequest("response_format", "response_format.type: expected \"text\" or \"json_object\", got %s", quote(typ))
	}
	return nil
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
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
	j, aerr := s.parseChat(body, m)
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
	id := "chatcmpl-" + randomID(24)
	w.Header().Set("X-Request-Id", id)
	if j.p.stream {
		s.streamChat(w, j, id)
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
	resp := chatCompletion{ID: id, Object: "chat.completion", Created: start.Unix(), Model: m.Name,
		SystemFingerprint: fingerprint, Usage: j.usage()}
	if j.p.tokenIDs {
		resp.PromptTokenIDs = j.prompts[0]
	}
	for _, c := range j.choices {
		msg := chatMessage{Role: "assistant"}
		content := c.content.String()
		if len(c.calls) == 0 || content != "" {
			msg.Content = &content
		}
		msg.ToolCalls = c.calls
		ch := chatChoice{Index: c.index, Message: msg, FinishReason: c.finish}
		if j.p.logprobs >= 0 {
			lp := &chatLogprobs{Content: make([]tokenLogprob, 0, len(c.logprobs))}
			for _, ev := range c.logprobs {
				lp.Content = append(lp.Content, m.logprobsEntry(ev))
			}
			ch.Logprobs = lp
		}
		if j.p.tokenIDs {
			ch.TokenIDs = c.ids
		}
		resp.Choices = append(resp.Choices, ch)
	}
	writeJSON(w, http.StatusOK, resp)
}

// fingerprint is the system_fingerprint of every response.
const fingerprint = "marlin"

func (s *Server) streamChat(w http.ResponseWriter, j *job, id string) {
	m := j.m
	sse := newSSEWriter(w, s.opts.WriteTimeout)
	chunk := chatChunk{ID: id, Object: "chat.completion.chunk", Created: j.start.Unix(), Model: m.Name, SystemFingerprint: fingerprint,
		Choices: make([]chatChunkChoice, 1)}
	if j.p.includeUsage {
		chunk.Usage = jsonNull
	}
	send := func(cc chatChunkChoice) error {
		chunk.Choices[0] = cc
		return sse.event(&chunk)
	}
	empty := ""
	for _, c := range j.choices {
		if err := send(chatChunkChoice{Index: c.index, Delta: chatDelta{Role: "assistant", Content: &empty}}); err != nil {
			return
		}
	}
	err := j.run(jobHandlers{
		token: func(c *choice, text string, ev engine.Event) error {
			if text == "" && j.p.logprobs < 0 && !j.p.tokenIDs {
				return nil
			}
			cc := chatChunkChoice{Index: c.index}
			if text != "" {
				cc.Delta.Content = &text
			}
			if j.p.logprobs >= 0 {
				cc.Logprobs = &chatLogprobs{Content: []tokenLogprob{m.logprobsEntry(ev)}}
			}
			if j.p.tokenIDs {
				cc.TokenIDs = []int32{ev.Token}
			}
			return send(cc)
		},
		end: func(c *choice, text string) error {
			if text != "" {
				if err := send(chatChunkChoice{Index: c.index, Delta: chatDelta{Content: &text}}); err != nil {
					return err
				}
			}
			for i, call := range c.calls {
				call.Index = &i
				if err := send(chatChunkChoice{Index: c.index, Delta: chatDelta{ToolCalls: []toolCall{call}}}); err != nil {
					return err
				}
			}
			finish := c.finish
			return send(chatChunkChoice{Index: c.index, FinishReason: &finish})
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
		chunk.Choices = []chatChunkChoice{}
		chunk.Usage = usageJSON(j.usage())
		if sse.event(&chunk) != nil {
			return
		}
	}
	sse.done()
}
