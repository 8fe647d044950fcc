package server

import (
	"encoding/json"
	"strconv"
	"strings"
)

// normMessage is a validated chat message in the shape chat templates
// expect: content a string (text parts joined) or null.
type normMessage struct {
	Role             string          `json:"role"`
	Content          *string         `json:"content"`
	Name             string          `json:"name,omitempty"`
	ToolCalls        []normToolCall  `json:"tool_calls,omitempty"`
	ToolCallID       string          `json:"tool_call_id,omitempty"`
	ReasoningContent json.RawMessage `json:"reasoning_content,omitempty"`
}

type normToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function toolCallFunction `json:"function"`
}

var knownRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": false}

// normalizeMessages validates the messages of a chat request and returns
// them as the template's input. The "developer" role is passed on as
// "system", which is what templates know.
func normalizeMessages(raw json.RawMessage) (json.RawMessage, *apiError) {
	switch rawKind(raw) {
	case "", "null":
		return nil, badRequest("messages", "messages is required: an array of {\"role\", \"content\"} objects")
	case "array":
	default:
		return nil, badRequest("messages", "messages: expected an array of messages, got %s", article(rawKind(raw)))
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, badRequest("messages", "messages: %v", err)
	}
	if len(list) == 0 {
		return nil, badRequest("messages", "messages must not be empty")
	}
	out := make([]normMessage, len(list))
	for i, item := range list {
		m, err := normalizeMessage(i, item)
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, badRequest("messages", "messages: %v", err)
	}
	return b, nil
}

func normalizeMessage(i int, raw json.RawMessage) (normMessage, *apiError) {
	var m normMessage
	field := func(name string) string { return "messages[" + itoa(i) + "]" + name }
	if rawKind(raw) != "object" {
		return m, badRequest("messages", "%s: expected an object with a role and content, got %s", field(""), article(rawKind(raw)))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return m, badRequest("messages", "%s: %v", field(""), err)
	}
	str := func(key string) (string, *apiError) {
		v, ok := obj[key]
		if !ok || absent(v) {
			return "", nil
		}
		var s string
		if rawKind(v) != "string" || json.Unmarshal(v, &s) != nil {
			return "", badRequest("messages", "%s: expected a string, got %s", field("."+key), article(rawKind(v)))
		}
		return s, nil
	}
	role, err := str("role")
	if err != nil {
		return m, err
	}
	if role == "" {
		return m, badRequest("messages", "%s.role is required (system, developer, user, assistant or tool)", field(""))
	}
	if !knownRoles[role] {
		return m, badRequest("messages", "%s.role: unknown role %s (want system, developer, user, assistant or tool)", field(""), quote(role))
	}
	if role == "developer" {
		role = "system"
	}
	m.Role = role
	if m.Name, err = str("name"); err != nil {
		return m, err
	}
	content, ok := obj["content"]
	switch rawKind(content) {
	case "", "null":
		if role != "assistant" {
			return m, badRequest("messages", "%s.content is required for role %q", field(""), role)
		}
	case "string":
		var s string
		json.Unmarshal(content, &s)
		m.Content = &s
	case "array":
		s, err := joinParts(field(".content"), content, role)
		if err != nil {
			return m, err
		}
		m.Content = &s
	default:
		return m, badRequest("messages", "%s: expected a string or an array of content parts, got %s", field(".content"), article(rawKind(content)))
	}
	_ = ok
	if tc, ok := obj["tool_calls"]; ok && !absent(tc) {
		if role != "assistant" {
			return m, badRequest("messages", "%s: only assistant messages carry tool calls", field(".tool_calls"))
		}
		calls, err := normalizeToolCalls(field(".tool_calls"), tc)
		if err != nil {
			return m, err
		}
		m.ToolCalls = calls
	}
	if m.ToolCallID, err = str("tool_call_id"); err != nil {
		return m, err
	}
	if role == "tool" && m.ToolCallID == "" {
		return m, badRequest("messages", "%s.tool_call_id is required for role \"tool\" (the id of the call this answers)", field(""))
	}
	if rc, ok := obj["reasoning_content"]; ok && rawKind(rc) == "string" {
		m.ReasoningContent = rc
	}
	return m, nil
}

// joinParts joins an array of text parts into one string ("\n" between
// parts, as OpenAI-compatible servers feed text-only templates).
func joinParts(field string, raw json.RawMessage, role string) (string, *apiError) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest("messages", "%s: %v", field, err)
	}
	texts := make([]string, 0, len(parts))
	for j, p := range parts {
		pf := field + "[" + itoa(j) + "]"
		var part struct {
			Type    any `json:"type"`
			Text    any `json:"text"`
			Refusal any `json:"refusal"`
		}
		if rawKind(p) != "object" || json.Unmarshal(p, &part) != nil {
			return "", badRequest("messages", "%s: expected a content part object {\"type\": \"text\", \"text\": ...}, got %s", pf, article(rawKind(p)))
		}
		typ, _ := part.Type.(string)
		switch typ {
		case "text":
			t, ok := part.Text.(string)
			if !ok {
				return "", badRequest("messages", "%s.text: expected a string", pf)
			}
			texts = append(texts, t)
		case "refusal":
			t, ok := part.Refusal.(string)
			if !ok || role != "assistant" {
				return "", badRequest("messages", "%s: refusal parts are for assistant messages, with a string refusal", pf)
			}
			texts = append(texts, t)
		case "image_url", "input_audio", "file", "input_image":
			return "", unsupported("messages", "%s: content of type %q is not supported: this server takes text only", pf, typ)
		case "":
			return "", badRequest("messages", "%s.type is required (\"text\")", pf)
		default:
			return "", badRequest("messages", "%s.type: unknown content part type %s", pf, quote(typ))
		}
	}
	return strings.Join(texts, "\n"), nil
}

func normalizeToolCalls(field string, raw json.RawMessage) ([]normToolCall, *apiError) {
	var list []json.RawMessage
	if rawKind(raw) != "array" || json.Unmarshal(raw, &list) != nil {
		return nil, badRequest("messages", "%s: expected an array of tool calls", field)
	}
	out := make([]normToolCall, len(list))
	for k, item := range list {
		f := field + "[" + itoa(k) + "]"
		var c struct {
			ID       any `json:"id"`
			Type     any `json:"type"`
			Function struct {
				Name      any `json:"name"`
				Arguments any `json:"arguments"`
			} `json:"function"`
		}
		if rawKind(item) != "object" || json.Unmarshal(item, &c) != nil {
			return nil, badRequest("messages", "%s: expected {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}", f)
		}
		id, _ := c.ID.(string)
		name, okName := c.Function.Name.(string)
		args, okArgs := c.Function.Arguments.(string)
		if typ, _ := c.Type.(string); typ != "function" && c.Type != nil {
			return nil, badRequest("messages", "%s.type: %s is not supported (only \"function\")", f, quote(typ))
		}
		if !okName || name == "" {
			return nil, badRequest("messages", "%s.function.name: expected a non-empty string", f)
		}
		if c.Function.Arguments == nil {
			args, okArgs = "{}", true
		}
		if !okArgs {
			return nil, badRequest("messages", "%s.function.arguments: expected a string (JSON text)", f)
		}
		out[k] = normToolCall{ID: id, Type: "function", Function: toolCallFunction{Name: name, Arguments: args}}
	}
	return out, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
