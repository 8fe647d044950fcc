package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/engine"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
)

// hermesTemplate is a play-script template with Hermes/Qwen tool calls.
const hermesTemplate = `{{ bos_token }}{% if tools %}{{ 'SYSTEM:\nYou may call these tools:\n' }}{% for t in tools %}{{ t | tojson }}{{ '\n' }}{% endfor %}{{ 'Call one as <tool_call>{"name": ..., "arguments": ...}</tool_call>\n\n' }}{% endif %}` +
	`{% for message in messages %}{{ message.role | upper + ':\n' }}{% if message.content %}{{ message.content }}{% endif %}` +
	`{% if message.tool_calls %}{% for c in message.tool_calls %}{{ '<tool_call>' + ({'name': c.function.name, 'arguments': c.function.arguments} | tojson) + '</tool_call>' }}{% endfor %}{% endif %}{{ '\n\n' }}{% endfor %}` +
	`{% if add_generation_prompt %}{{ 'ASSISTANT:\n' }}{% endif %}`

// llama3Template has Llama 3.1's JSON tool-call instructions.
const llama3Template = `{{ bos_token }}{% if tools %}{{ 'Respond with {"name": function name, "parameters": dictionary of arguments}.\n' }}{% endif %}` +
	`{% for message in messages %}{{ message.role | upper + ':\n' }}{{ message.content or '' }}{{ '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:\n' }}{% endif %}`

func weatherTools() []openai.ChatCompletionToolUnionParam {
	return []openai.ChatCompletionToolUnionParam{
		openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather", Description: openai.String("The weather in a city."),
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}),
		openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_time",
			Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{}}}),
	}
}

func toolChat() openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: "scripted", Tools: weatherTools(), MaxTokens: openai.Int(40),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")}}
}

// chatBoth runs a chat request without and with streaming and returns both
// views of the first choice (content, tool calls, finish reason).
func chatBoth(t *testing.T, s *testServer, p openai.ChatCompletionNewParams) [2]openai.ChatCompletionChoice {
	t.Helper()
	return chatBothMarkup(t, s, p, false)
}

// chatBothMarkup is chatBoth; markupOK allows tool-call markup in the
// streamed content (when it is not a call).
func chatBothMarkup(t *testing.T, s *testServer, p openai.ChatCompletionNewParams, markupOK bool) [2]openai.ChatCompletionChoice {
	t.Helper()
	c := s.client()
	resp, err := c.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	acc, chunks := streamChat(t, c, p)
	for _, ch := range chunks {
		for _, cc := range ch.Choices {
			if !markupOK && strings.Contains(cc.Delta.Content, "<tool_call>") || strings.Contains(cc.Delta.Content, `"parameters"`) {
				t.Errorf("tool-call markup streamed as content: %s", ch.RawJSON())
			}
		}
	}
	return [2]openai.ChatCompletionChoice{resp.Choices[0], acc.Choices[0]}
}

func checkCall(t *testing.T, view string, ch openai.ChatCompletionChoice, name, args string) {
	t.Helper()
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 {
		t.Fatalf("%s: finish %q, %d tool calls, content %q", view, ch.FinishReason, len(ch.Message.ToolCalls), ch.Message.Content)
	}
	call := ch.Message.ToolCalls[0]
	if call.Type != "function" || !strings.HasPrefix(call.ID, "call_") || call.Function.Name != name || (args != "" && call.Function.Arguments != args) {
		t.Errorf("%s: call %+v, want %s(%s)", view, call.Function, name, args)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(call.Function.Arguments), &obj); err != nil {
		t.Errorf("%s: arguments %q are not a JSON object: %v", view, call.Function.Arguments, err)
	}
}

// TestToolCalls: tool calls written by the model in the template's syntax
// come back as tool_calls (finish_reason "tool_calls"), streamed or not,
// as the official client sees them.
func TestToolCalls(t *testing.T) {
	t.Run("hermes", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate,
			"Let me check. ", "<tool_call>", `{"name": "get_weather", "arguments": {"city": "Paris"}}`, "</tool_call>")
		for i, ch := range chatBoth(t, s, toolChat()) {
			view := []string{"plain", "stream"}[i]
			checkCall(t, view, ch, "get_weather", `{"city":"Paris"}`)
			if strings.TrimSpace(ch.Message.Content) != "Let me check." {
				t.Errorf("%s: content %q", view, ch.Message.Content)
			}
		}
	})
	t.Run("hermes two calls", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate,
			`<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>`, "\n\t", `<tool_call>{"name": "get_time", "arguments": {}}</tool_call>`)
		for i, ch := range chatBoth(t, s, toolChat()) {
			calls := ch.Message.ToolCalls
			if ch.FinishReason != "tool_calls" || len(calls) != 2 || calls[0].Function.Name != "get_weather" || calls[1].Function.Name != "get_time" ||
				calls[1].Function.Arguments != "{}" || calls[0].ID == calls[1].ID || strings.TrimSpace(ch.Message.Content) != "" {
				t.Errorf("view %d: %s", i, ch.RawJSON())
			}
		}
	})
	t.Run("parallel_tool_calls false", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate,
			`<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>`, "\n\t", `<tool_call>{"name": "get_time", "arguments": {}}</tool_call>`)
		p := toolChat()
		p.ParallelToolCalls = openai.Bool(false)
		for i, ch := range chatBoth(t, s, p) {
			checkCall(t, []string{"plain", "stream"}[i], ch, "get_weather", `{"city":"Paris"}`)
		}
	})
	t.Run("forced budget", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate, "x")
		p := toolChat()
		p.MaxTokens = openai.Int(5)
		p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
		c := s.client()
		_, err := c.Chat.Completions.New(context.Background(), p)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("max_tokens 5 for a forced call: %v", err)
		}
	})
	t.Run("llama3", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, llama3Template, `{"name": "get_weather", "parameters": {"city": "Paris"}}`)
		for i, ch := range chatBoth(t, s, toolChat()) {
			checkCall(t, []string{"plain", "stream"}[i], ch, "get_weather", `{"city":"Paris"}`)
		}
	})
	t.Run("no call", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate, "Paris is ", "fair today.")
		for i, ch := range chatBoth(t, s, toolChat()) {
			if ch.FinishReason != "stop" || len(ch.Message.ToolCalls) != 0 || ch.Message.Content != "Paris is fair today." {
				t.Errorf("view %d: %s", i, ch.RawJSON())
			}
		}
	})
	t.Run("malformed call is content", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate, "<tool_call>", `{"name": oops`, "</tool_call>")
		for i, ch := range chatBothMarkup(t, s, toolChat(), true) {
			if ch.FinishReason != "stop" || len(ch.Message.ToolCalls) != 0 || ch.Message.Content != `<tool_call>{"name": oops</tool_call>` {
				t.Errorf("view %d: %s", i, ch.RawJSON())
			}
		}
	})
	t.Run("tool_choice none", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate, "<tool_call>", `{"name": "get_time", "arguments": {}}`, "</tool_call>")
		p := toolChat()
		p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}
		for i, ch := range chatBothMarkup(t, s, p, true) {
			if ch.FinishReason != "stop" || len(ch.Message.ToolCalls) != 0 || !strings.Contains(ch.Message.Content, "get_time") {
				t.Errorf("view %d: %s", i, ch.RawJSON())
			}
		}
	})
	t.Run("forced", func(t *testing.T) {
		// the model would write prose: constrained decoding makes it a call
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate, "I will not ", "call anything.")
		p := toolChat()
		p.ToolChoice = openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"})
		for i, ch := range chatBoth(t, s, p) {
			checkCall(t, []string{"named", "named stream"}[i], ch, "get_weather", "")
		}
		p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
		for i, ch := range chatBoth(t, s, p) {
			if len(ch.Message.ToolCalls) == 1 && ch.Message.ToolCalls[0].Function.Name == "get_time" {
				checkCall(t, []string{"required", "required stream"}[i], ch, "get_time", "")
			} else {
				checkCall(t, []string{"required", "required stream"}[i], ch, "get_weather", "")
			}
		}
	})
	t.Run("history", func(t *testing.T) {
		s := newScriptedServer(t, Options{}, engine.Config{}, hermesTemplate, "It is sunny.")
		p := toolChat()
		assistant := openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{
			OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: "call_1",
				Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}}}
		p.Messages = append(p.Messages, openai.ChatCompletionMessageParamUnion{OfAssistant: &assistant}, openai.ToolMessage(`{"sky":"clear"}`, "call_1"))
		for i, ch := range chatBoth(t, s, p) {
			if ch.FinishReason != "stop" || ch.Message.Content != "It is sunny." {
				t.Errorf("view %d: %s", i, ch.RawJSON())
			}
		}
	})
}
