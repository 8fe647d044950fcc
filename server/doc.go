// Package server is marlin's OpenAI-compatible HTTP API over an engine
// (`marlin serve`).
//
// # Endpoints
//
//	GET  /v1/models, /v1/models/{name}   the served model (with max_model_len)
//	POST /v1/chat/completions            chat, rendered with the model's chat template
//	POST /v1/completions                 text completion of one or more prompts
//	GET  /health                         200 {"status":"ok"} once the model is loaded; 503 before and while draining
//	GET  /metrics                        Prometheus text format
//
// A request's "model" must be the served name exactly (as /v1/models lists
// it) or be left out; any other name is a 404 (code model_not_found).
//
// # Requests
//
// Chat takes system, developer (treated as system), user, assistant and tool
// messages, with content as a string or an array of text parts (other part
// types are a 400: the server is text only). Both endpoints take stream and
// stream_options.include_usage, max_tokens (max_completion_tokens for
// chat), temperature, top_p, seed, stop (a string or up to 16 strings),
// presence_penalty, frequency_penalty, logit_bias, n and, as extensions
// (like vLLM), top_k, min_p, repetition_penalty, ignore_eos and
// return_token_ids. Chat takes logprobs with top_logprobs (0–20),
// response_format, tools, tool_choice, parallel_tool_calls and
// chat_template_kwargs; completions take a prompt as a string, strings,
// token ids or arrays of token ids, echo, and logprobs (0–20).
//
// Defaults follow OpenAI: temperature 1, top_p 1, n 1; max_tokens is the rest
// of the context for chat and 16 for completions. max_tokens beyond the
// context is capped (finish_reason "length" when the context fills up); a
// prompt that leaves no room to generate is a 400 (code
// context_length_exceeded). Every sequence of a request with a seed is
// reproducible: choice i samples with seed+i. Log-probabilities are those
// of the distribution sampled from after logit_bias and any constraint
// (JSON mode, forced tool calls), before penalties and temperature.
//
// Not supported, each a 400 that says so: JSON schemas in response_format,
// suffix (no fill-in-the-middle), echo together with logprobs (prompt
// log-probabilities are not computed), best_of other than n, image and audio
// content.
//
// # JSON mode and tool calls
//
// response_format {"type": "json_object"} is constrained decoding: tokens
// that cannot continue a JSON object are masked before sampling, a token is
// allowed only while the object can still be closed within max_tokens, and
// generation stops when the object is complete. The content is therefore
// always a JSON object (finish_reason "stop"), unless a stop string cuts it.
// Whitespace runs are bounded (20 bytes, 2 before the object) and nesting to
// 64 levels.
//
// Tools need a chat template with a known tool-call syntax
// (chat.DetectToolSyntax: Hermes/Qwen <tool_call>, Llama 3.1 JSON, Mistral
// [TOOL_CALLS]); otherwise a request with tools is a 400 unless tool_choice
// is "none" (then the tools are left out of the prompt). Calls are parsed
// from the output (chat.ParseToolCalls) and returned as tool_calls with
// finish_reason "tool_calls"; while streaming, text is passed on until the
// markup may begin, and each parsed call is sent as one delta at the end.
// Malformed markup is returned as content. tool_choice "required" or a named
// function forces a call: the syntax's opening is appended to the prompt and
// the function name (one of the tools) and the arguments (a JSON object) are
// constrained as in JSON mode.
//
// # Errors
//
// Errors are OpenAI's object {"error": {"message", "type", "param", "code"}}:
// 400 for malformed JSON, wrong types, out-of-range values and unsupported
// features (naming the field), 401 without the API key, 404 for unknown
// models and paths, 405 for wrong methods, 413 for a body over the limit,
// 429 with Retry-After when the engine's queue is full, 503 while the model
// loads or the server drains, 504 when a request passes the server's
// deadline. A stream that fails after it started ends with an error event
// and [DONE]. A panic in a handler is logged and answered with a 500.
//
// # Scheduling, cancellation and shutdown
//
// The engine batches (continuous batching, chunked prefill, paged KV cache);
// the server bounds its queue (engine.Config.MaxWaiting → 429), cancels a
// sequence as soon as its client goes away (its KV blocks are freed at the
// next engine step), applies a per-request deadline, and drops clients that
// stop reading for Options.WriteTimeout. Shutdown stops accepting, lets
// running requests finish within a grace period, then cuts the rest short
// with an error and returns once every handler has.
package server
