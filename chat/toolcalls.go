package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ToolSyntax is the way a model writes tool calls in its output.
type ToolSyntax int

const (
	// ToolSyntaxNone means no known tool-call syntax: output is plain content.
	ToolSyntaxNone ToolSyntax = iota
	// ToolSyntaxHermes is Hermes / Qwen2.5 / Qwen3 style: one or more
	// <tool_call>{"name": ..., "arguments": {...}}</tool_call> blocks.
	ToolSyntaxHermes
	// ToolSyntaxLlama3 is Llama 3.1+ JSON style: the whole output is
	// {"name": ..., "parameters": {...}} (several separated by ";"),
	// optionally after <|python_tag|>.
	ToolSyntaxLlama3
	// ToolSyntaxMistral is Mistral style: [TOOL_CALLS] followed by a JSON
	// array of {"name": ..., "arguments": {...}, "id": ...}.
	ToolSyntaxMistral
)

// String names the syntax.
func (s ToolSyntax) String() string {
	switch s {
	case ToolSyntaxHermes:
		return "hermes"
	case ToolSyntaxLlama3:
		return "llama3"
	case ToolSyntaxMistral:
		return "mistral"
	}
	return "none"
}

// ToolCall is one tool call parsed from model output.
type ToolCall struct {
	// ID is the call id when the syntax carries one (Mistral), else "".
	ID string
	// Name is the function name.
	Name string
	// Arguments is the arguments as compact JSON text (an object; "{}" when
	// the model gave none), ready for an OpenAI tool_calls[].function.arguments.
	Arguments string
}

// ErrMalformedToolCall is wrapped by the error ParseToolCalls returns when
// the output uses the tool-call markup but the call cannot be decoded.
var ErrMalformedToolCall = errors.New("malformed tool call")

// DetectToolSyntax guesses the tool-call syntax of a chat template from
// markers in its source: <tool_call> (Hermes, Qwen), [TOOL_CALLS] (Mistral),
// or Llama 3.1's `"parameters"` JSON instructions / <|python_tag|> without
// another syntax.
func DetectToolSyntax(templateSource string) ToolSyntax {
	switch {
	case strings.Contains(templateSource, "<tool_call>"):
		return ToolSyntaxHermes
	case strings.Contains(templateSource, "[TOOL_CALLS]"):
		return ToolSyntaxMistral
	case strings.Contains(templateSource, `"parameters": `) && strings.Contains(templateSource, "<|eot_id|>") && !strings.Contains(templateSource, "<function="):
		return ToolSyntaxLlama3
	}
	return ToolSyntaxNone
}

// ParseToolCalls splits model output into plain content and tool calls.
//
// Malformed calls: when the output uses the syntax's markup (a <tool_call>
// block, [TOOL_CALLS], or Llama's <|python_tag|> / a leading {"name") but a
// call cannot be decoded, ParseToolCalls returns the whole output as content,
// no calls, and an error wrapping ErrMalformedToolCall. A server can log the
// error and still answer with the text. Output without markup is content
// with no calls and no error.
func ParseToolCalls(syntax ToolSyntax, output string) (content string, calls []ToolCall, err error) {
	switch syntax {
	case ToolSyntaxHermes:
		content, calls, err = parseHermes(output)
	case ToolSyntaxLlama3:
		content, calls, err = parseLlama3(output)
	case ToolSyntaxMistral:
		content, calls, err = parseMistral(output)
	default:
		return output, nil, nil
	}
	if err != nil {
		return output, nil, fmt.Errorf("chat: %s tool call: %w: %w", syntax, ErrMalformedToolCall, err)
	}
	return content, calls, nil
}

// callObject decodes {"name": ..., "<argsKey>": ...} into a ToolCall.
func callObject(data []byte, argKeys ...string) (ToolCall, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil {
		return ToolCall{}, err
	}
	if dec.More() {
		return ToolCall{}, errors.New("unexpected text after the JSON object")
	}
	var call ToolCall
	if err := json.Unmarshal(obj["name"], &call.Name); err != nil || call.Name == "" {
		return ToolCall{}, errors.New(`missing "name" string`)
	}
	if id, ok := obj["id"]; ok {
		_ = json.Unmarshal(id, &call.ID)
	}
	call.Arguments = "{}"
	for _, k := range argKeys {
		raw, ok := obj[k]
		if !ok {
			continue
		}
		args, err := argumentsText(raw)
		if err != nil {
			return ToolCall{}, fmt.Errorf("%q: %w", k, err)
		}
		call.Arguments = args
		break
	}
	return call, nil
}

// argumentsText returns compact JSON for an arguments value: an object, or
// a string holding one (some models double-encode).
func argumentsText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		raw = []byte(strings.TrimSpace(s))
	}
	if len(raw) == 0 || raw[0] != '{' {
		if string(raw) == "null" {
			return "{}", nil
		}
		return "", errors.New("arguments are not a JSON object")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", err
	}
	return b.String(), nil
}

func parseHermes(output string) (string, []ToolCall, error) {
	const open, closeTag = "<tool_call>", "</tool_call>"
	if !strings.Contains(output, open) {
		return output, nil, nil
	}
	var content strings.Builder
	var calls []ToolCall
	rest := output
	for {
		i := strings.Index(rest, open)
		if i < 0 {
			content.WriteString(rest)
			break
		}
		content.WriteString(rest[:i])
		rest = rest[i+len(open):]
		body := rest
		j := strings.Index(rest, closeTag)
		if j >= 0 {
			body, rest = rest[:j], rest[j+len(closeTag):]
		} else {
			// Generation stopped before the closing tag.
			rest = ""
		}
		call, err := callObject([]byte(strings.TrimSpace(body)), "arguments", "parameters")
		if err != nil {
			return "", nil, fmt.Errorf("call %d: %w", len(calls)+1, err)
		}
		calls = append(calls, call)
	}
	return strings.TrimSpace(content.String()), calls, nil
}

func parseLlama3(output string) (string, []ToolCall, error) {
	text := strings.TrimSpace(output)
	tagged := false
	if t, ok := strings.CutPrefix(text, "<|python_tag|>"); ok {
		text, tagged = strings.TrimSpace(t), true
	}
	text = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(text, "<|eom_id|>"), "<|eot_id|>"))
	if !strings.HasPrefix(text, "{") {
		// Plain text, or a built-in tool call (`brave_search.call(...)`)
		// which is not a JSON function call.
		return output, nil, nil
	}
	looksLikeCall := tagged || strings.HasPrefix(strings.Join(strings.Fields(text), ""), `{"name"`)
	var calls []ToolCall
	dec := json.NewDecoder(strings.NewReader(text))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if looksLikeCall {
				return "", nil, err
			}
			return output, nil, nil
		}
		call, err := callObject(raw, "parameters", "arguments")
		if err != nil {
			if looksLikeCall {
				return "", nil, err
			}
			return output, nil, nil
		}
		calls = append(calls, call)
		// Several calls are separated by ";" (or just whitespace).
		rest := strings.TrimSpace(text[dec.InputOffset():])
		rest = strings.TrimSpace(strings.TrimPrefix(rest, ";"))
		if rest == "" {
			break
		}
		if !strings.HasPrefix(rest, "{") {
			if looksLikeCall {
				return "", nil, fmt.Errorf("unexpected text after call %d: %q", len(calls), rest)
			}
			return output, nil, nil
		}
		text = rest
		dec = json.NewDecoder(strings.NewReader(text))
	}
	return "", calls, nil
}

func parseMistral(output string) (string, []ToolCall, error) {
	const marker = "[TOOL_CALLS]"
	i := strings.Index(output, marker)
	if i < 0 {
		return output, nil, nil
	}
	content := strings.TrimSpace(output[:i])
	body := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(output[i+len(marker):]), "</s>"))
	var raws []json.RawMessage
	if err := json.Unmarshal([]byte(body), &raws); err != nil {
		var single json.RawMessage
		if json.Unmarshal([]byte(body), &single) != nil || !bytes.HasPrefix(bytes.TrimSpace(single), []byte("{")) {
			return "", nil, err
		}
		raws = []json.RawMessage{single}
	}
	calls := make([]ToolCall, 0, len(raws))
	for n, raw := range raws {
		call, err := callObject(raw, "arguments", "parameters")
		if err != nil {
			return "", nil, fmt.Errorf("call %d: %w", n+1, err)
		}
		calls = append(calls, call)
	}
	return content, calls, nil
}
