package server

import (
	"crypto/rand"
	"encoding/json"
	"strings"

	"github.com/marlin-llm/marlin/chat"
)

// toolMarkers are the texts that start (or wrap) tool calls in each syntax.
func toolMarkers(s chat.ToolSyntax) []string {
	switch s {
	case chat.ToolSyntaxHermes:
		return []string{"<tool_call>", "</tool_call>"}
	case chat.ToolSyntaxLlama3:
		return []string{"<|python_tag|>"}
	case chat.ToolSyntaxMistral:
		return []string{"[TOOL_CALLS]"}
	}
	return nil
}

// toolScanner separates streamed content from tool-call markup: text is
// passed on until the markup may begin (a tail that could be the start of
// the marker is held back), and from the marker on everything is kept for
// chat.ParseToolCalls at the end.
type toolScanner struct {
	syntax    chat.ToolSyntax
	start     string // the marker that opens the markup
	pending   string // held back: may be the start of the marker
	capturing bool
	captured  strings.Builder
	content   bool // some non-space content was passed on (Llama 3: a call must come first)
}

func newToolScanner(s chat.ToolSyntax) *toolScanner {
	t := &toolScanner{syntax: s}
	if m := toolMarkers(s); len(m) > 0 {
		t.start = m[0]
	}
	return t
}

// push takes generated text and returns the content that can be shown now.
func (t *toolScanner) push(text string) string {
	if t.capturing {
		t.captured.WriteString(text)
		return ""
	}
	t.pending += text
	if t.syntax == chat.ToolSyntaxLlama3 && !t.content {
		// the whole output is the call: {"name": ...} or <|python_tag|>...
		rest := strings.TrimLeft(t.pending, " \t\r\n")
		switch {
		case rest == "" || strings.HasPrefix(t.start, rest):
			return ""
		case strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, t.start):
			t.capturing = true
			t.captured.WriteString(t.pending)
			t.pending = ""
			return ""
		}
		t.content = true
	}
	if i := strings.Index(t.pending, t.start); i >= 0 {
		out := t.pending[:i]
		t.capturing = true
		t.captured.WriteString(t.pending[i:])
		t.pending = ""
		return out
	}
	hold := 0
	for n := min(len(t.start)-1, len(t.pending)); n > 0; n-- {
		if strings.HasSuffix(t.pending, t.start[:n]) {
			hold = n
			break
		}
	}
	out := t.pending[:len(t.pending)-hold]
	t.pending = t.pending[len(t.pending)-hold:]
	return out
}

// finish returns the rest of the content and the parsed calls. Malformed
// markup is returned as content, with the parse error.
func (t *toolScanner) finish() (string, []toolCall, error) {
	if !t.capturing {
		out := t.pending
		t.pending = ""
		return out, nil, nil
	}
	content, calls, err := chat.ParseToolCalls(t.syntax, t.captured.String())
	if err != nil {
		return t.captured.String(), nil, err
	}
	out := make([]toolCall, len(calls))
	for i, c := range calls {
		id := c.ID
		if id == "" {
			id = "call_" + randomID(24)
		}
		out[i] = toolCall{ID: id, Type: "function", Function: toolCallFunction{Name: c.Name, Arguments: c.Arguments}}
	}
	return content, out, nil
}

// toolsParam is a validated tools / tool_choice pair.
type toolsParam struct {
	tools  json.RawMessage // passed to the template; nil for none
	parse  bool            // parse tool calls from the output
	choice string          // "auto", "none", "required" or a function name
	named  bool            // choice names a function
	single bool            // parallel_tool_calls false: keep the first call only
}

// validateTools checks tools and tool_choice.
func validateTools(toolsRaw, choiceRaw json.RawMessage, syntax chat.ToolSyntax, model string) (toolsParam, *apiError) {
	var p toolsParam
	var names []string
	if !absent(toolsRaw) {
		var tools []json.RawMessage
		if rawKind(toolsRaw) != "array" || json.Unmarshal(toolsRaw, &tools) != nil {
			return p, badRequest("tools", "tools: expected an array of tools, got %s", article(rawKind(toolsRaw)))
		}
		for i, raw := range tools {
			var t struct {
				Type     string          `json:"type"`
				Function json.RawMessage `json:"function"`
			}
			if rawKind(raw) != "object" || json.Unmarshal(raw, &t) != nil {
				return p, badRequest("tools", "tools[%d]: expected an object {\"type\": \"function\", \"function\": {...}}", i)
			}
			if t.Type != "function" {
				return p, badRequest("tools", "tools[%d].type: %q is not supported (only \"function\")", i, t.Type)
			}
			var f struct {
				Name        any `json:"name"`
				Description any `json:"description"`
				Parameters  any `json:"parameters"`
			}
			if rawKind(t.Function) != "object" || json.Unmarshal(t.Function, &f) != nil {
				return p, badRequest("tools", "tools[%d].function: expected an object with a name", i)
			}
			name, ok := f.Name.(string)
			if !ok || name == "" {
				return p, badRequest("tools", "tools[%d].function.name: expected a non-empty string", i)
			}
			if len(name) > 64 || strings.ContainsFunc(name, func(r rune) bool {
				return !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
			}) {
				return p, badRequest("tools", "tools[%d].function.name %q: use at most 64 letters, digits, '_' or '-'", i, name)
			}
			if _, ok := f.Description.(string); f.Description != nil && !ok {
				return p, badRequest("tools", "tools[%d].function.description: expected a string", i)
			}
			if _, ok := f.Parameters.(map[string]any); f.Parameters != nil && !ok {
				return p, badRequest("tools", "tools[%d].function.parameters: expected a JSON Schema object", i)
			}
			names = append(names, name)
		}
		if len(tools) > 0 {
			p.tools = toolsRaw
		}
	}
	p.choice = "auto"
	if !absent(choiceRaw) {
		switch rawKind(choiceRaw) {
		case "string":
			json.Unmarshal(choiceRaw, &p.choice)
			switch p.choice {
			case "auto", "none", "required":
			default:
				return p, badRequest("tool_choice", "tool_choice %q: expected \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}", p.choice)
			}
		case "object":
			var c struct {
				Type     string `json:"type"`
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if json.Unmarshal(choiceRaw, &c) != nil || c.Type != "function" || c.Function.Name == "" {
				return p, badRequest("tool_choice", "tool_choice: expected {\"type\": \"function\", \"function\": {\"name\": ...}}")
			}
			if !contains(names, c.Function.Name) {
				return p, badRequest("tool_choice", "tool_choice names the function %q, which is not in tools", c.Function.Name)
			}
			p.choice, p.named = c.Function.Name, true
		default:
			return p, badRequest("tool_choice", "tool_choice: expected a string or an object, got %s", article(rawKind(choiceRaw)))
		}
		if p.choice != "none" && p.tools == nil {
			return p, badRequest("tool_choice", "tool_choice %q needs tools", p.choice)
		}
	}
	if p.tools == nil {
		return p, nil
	}
	if p.choice == "none" {
		// the model is not to call tools: leave them out of the prompt
		p.tools = nil
		return p, nil
	}
	if syntax == chat.ToolSyntaxNone {
		return p, badRequest("tools", "model %q cannot call tools: its chat template defines no tool-call syntax (known: Hermes/Qwen <tool_call>, Llama 3.1 JSON, Mistral [TOOL_CALLS]); send tool_choice \"none\" or leave tools out", model)
	}
	p.parse = true
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// randomID returns n random characters from [a-zA-Z0-9].
func randomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
