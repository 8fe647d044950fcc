// Package chat renders Hugging Face chat templates the way transformers'
// apply_chat_template does, byte for byte, and parses tool calls out of
// model output.
//
// # Rendering
//
// transformers renders a template with a jinja2 ImmutableSandboxedEnvironment
// (trim_blocks and lstrip_blocks on, the loopcontrols extension and its
// {% generation %} tag), a tojson filter that is json.dumps(x,
// ensure_ascii=False, indent=..., separators=..., sort_keys=...), and the
// globals raise_exception and strftime_now. The variables are messages,
// tools (None without tools), documents (None), add_generation_prompt, the
// tokenizer's special tokens and any extra keyword arguments.
//
// The template language is parsed and executed by
// github.com/nikolalohinski/gonja/v2. gonja's expression semantics are Go
// flavoured, so after parsing this package rewrites every expression of the
// template into calls to its own helpers, which implement jinja2's Python
// semantics on a Python-like value model: Undefined distinct from None,
// insertion-ordered dicts (JSON key order is kept, for tojson and
// .items()), tuples, generators (map/select/... results, which tojson
// rejects like Python), str/dict/list methods, Python str() / repr() /
// float formatting, `+` type errors, slicing with steps, negative indexes,
// `in`, chained comparisons, conditional expressions anywhere, Markup
// escaping on `+`, and the jinja2 filters and tests. It also implements the
// set / filter / with / generation tags itself, fixes gonja's
// lstrip_blocks and raw-block whitespace handling, and never panics (gonja
// panics are recovered as errors).
//
// Errors: New reports syntax errors, unknown filters or tests (jinja2 fails
// these at compile time too) with the template name and line. Render returns
// a *RenderError whose Msg carries the Python exception the template would
// raise under transformers ("TypeError: can only concatenate str (not
// \"dict\") to str") or, with Raised set, the message of a raise_exception
// call.
//
// Reference renders: scripts/chat_reference.py renders the templates under
// ../shared/data and chat/testdata/snippets.json with transformers (or the
// same jinja2 environment rebuilt by hand) into chat/testdata; the tests
// require byte equality.
//
// # Known gaps
//
// Things jinja2 does that this package does not (none occur in the tested
// templates): {% include %} / {% import %} / {% extends %} (a chat template
// is a single file); Python integers beyond 64 bits; str.format with complex
// format specs; Markup is tracked only through |safe, |escape, |string and
// `+` (other operations return plain strings); `is escaped` is always
// false; kwargs of a macro call reach the macro's `kwargs` in sorted order;
// inside a `recursive` for loop, loop(...) works but loop.index, loop.first,
// ... are undefined (gonja binds `loop` to the recursion function there).
//
// # Tool calls
//
// DetectToolSyntax picks a syntax from markers in the template source and
// ParseToolCalls splits model output into content and calls (Hermes/Qwen
// <tool_call> blocks, Llama 3.1 JSON, Mistral [TOOL_CALLS]).
package chat
