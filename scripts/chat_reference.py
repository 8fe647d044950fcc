#!/usr/bin/env python3
"""Compute the expected chat-template renders used by marlin's chat package tests.

The Go package github.com/marlin-llm/marlin/chat must render Hugging Face chat
templates byte-for-byte like transformers' ``apply_chat_template``. This script
produces the reference output: for every template it finds and every case in
chat/testdata/cases.json it renders the template with Python and writes
chat/testdata/expected.json, a JSON list of

    {"template": "<path relative to the data root>", "case": "<case name>",
     "special_tokens": {...}, "vars": {...}, "expected": "<rendered text>"}

or, when Python itself fails the case, the same object with "error" holding the
Python exception ("<ExceptionType>: <message>") instead of "expected".

Rendering engine, best first:
  1. transformers.utils.chat_template_utils.render_jinja_template (transformers
     >= 4.50 and 5.x): the exact function apply_chat_template uses.
  2. transformers.utils.chat_template_utils._compile_jinja_template (older
     transformers): transformers' own jinja2 environment.
  3. A hand-built copy of that environment using plain jinja2:
     ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the
     loopcontrols extension, a no-op {% generation %} tag, transformers' tojson
     filter and the raise_exception / strftime_now globals.
``--engine`` forces one of them ("transformers", "compile", "jinja2").

Inputs are normalized exactly as chat.Render normalizes OpenAI-style requests:
  * a message "content" that is a list of parts which are all {"type": "text"}
    becomes the texts joined with "\\n";
  * tool_calls[i].function.arguments that is a string holding a JSON object is
    replaced by that object (templates expect a mapping, as transformers users
    pass dicts); any other string is left alone.
Template variables are those transformers passes: messages, tools (None when the
case has no tools), documents (None), add_generation_prompt, the special tokens
of the template, plus the case's and the template's extra "vars". strftime_now
is overridden by a function formatting the fixed instant "now" of cases.json, so
output is reproducible (render() keyword arguments shadow jinja2 globals).

Special tokens: for a tokenizer_config.json they are read from the file (string
values or {"content": ...} objects; null ones are left out, like transformers'
special_tokens_map); for a bare .jinja file they come from cases.json
"templates"[<path>]["special_tokens"].

It also renders chat/testdata/snippets.json (small templates of our own that
pin down jinja2 semantics: whitespace control, Undefined/None, filters, tests,
string methods, ...) with the same environment (transformers'
_compile_jinja_template when available, else the hand-built copy) into
chat/testdata/snippets_expected.json; each snippet sees only its own "vars"
plus the fixed strftime_now.

Usage (from the repository root; the project lead regenerates with transformers):
    python3 scripts/chat_reference.py ../shared/data/chat-templates ../shared/data/tokenizers
With no template arguments it scans <data-root>/chat-templates and
<data-root>/tokenizers. Each argument is a directory (scanned recursively for
*.jinja files and tokenizer_config.json files carrying a "chat_template") or a
single such file.
"""

import argparse
import copy
import datetime
import json
import os
import sys

SPECIAL_TOKEN_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


def repo_root():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(here)


# --------------------------------------------------------------------------
# Rendering engines


def _hand_built_environment():
    """Rebuild transformers' jinja2 environment with plain jinja2."""
    import jinja2
    import jinja2.ext
    import jinja2.nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(jinja2.ext.Extension):
        """{% generation %}...{% endgeneration %}: renders its body unchanged,
        like transformers' AssistantTracker when no mask is requested."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def build_snippet_engine(forced):
    """Returns (render(source, variables) -> str, description) for snippets."""
    if forced in (None, "transformers", "compile"):
        try:
            import transformers
            from transformers.utils.chat_template_utils import _compile_jinja_template

            def render(source, variables):
                return _compile_jinja_template(source).render(**variables)

            if render("{{ x }}", {"x": 1}) != "1":
                raise ImportError("unexpected probe render")
            return render, "transformers %s _compile_jinja_template" % transformers.__version__
        except (ImportError, TypeError):
            if forced == "compile":
                sys.exit("compile engine unavailable")
    import jinja2

    env = _hand_built_environment()

    def render(source, variables):
        return env.from_string(source).render(**variables)

    return render, "jinja2 %s hand-built transformers environment" % jinja2.__version__


def build_engine(forced):
    """Returns (render, description); render(source, messages, tools, add_generation_prompt, kwargs) -> str."""
    errors = []
    if forced in (None, "transformers"):
        try:
            import transformers
            from transformers.utils.chat_template_utils import render_jinja_template

            def render(source, messages, tools, add_generation_prompt, kwargs):
                out = render_jinja_template(
                    conversations=[messages],
                    tools=tools,
                    documents=None,
                    chat_template=source,
                    add_generation_prompt=add_generation_prompt,
                    **kwargs,
                )
                # (rendered_list, generation_indices) in current releases; be lenient.
                if isinstance(out, tuple):
                    out = out[0]
                if isinstance(out, list):
                    out = out[0]
                return out

            probe = render("{{ messages[0].content }}{{ bos_token }}", [{"role": "user", "content": "x"}], None, False,
                           {"bos_token": "<s>"})
            if probe != "x<s>":
                raise ImportError("unexpected probe render %r" % (probe,))
            return render, "transformers %s render_jinja_template" % transformers.__version__
        except (ImportError, TypeError) as e:
            errors.append("render_jinja_template: %s" % e)
            if forced == "transformers":
                sys.exit("transformers engine unavailable: %s" % e)
    if forced in (None, "compile"):
        try:
            import transformers
            from transformers.utils.chat_template_utils import _compile_jinja_template

            def render(source, messages, tools, add_generation_prompt, kwargs):
                return _compile_jinja_template(source).render(
                    messages=messages,
                    tools=tools,
                    documents=None,
                    add_generation_prompt=add_generation_prompt,
                    **kwargs,
                )

            if render("{{ messages[0].content }}", [{"role": "user", "content": "x"}], None, False, {}) != "x":
                raise ImportError("unexpected probe render")
            return render, "transformers %s _compile_jinja_template" % transformers.__version__
        except (ImportError, TypeError) as e:
            errors.append("_compile_jinja_template: %s" % e)
            if forced == "compile":
                sys.exit("compile engine unavailable: %s" % e)
    import jinja2

    env = _hand_built_environment()
    cache = {}

    def render(source, messages, tools, add_generation_prompt, kwargs):
        tmpl = cache.get(source)
        if tmpl is None:
            tmpl = env.from_string(source)
            cache[source] = tmpl
        return tmpl.render(
            messages=messages,
            tools=tools,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        )

    return render, "jinja2 %s hand-built transformers environment" % jinja2.__version__


# --------------------------------------------------------------------------
# Inputs


def normalize_messages(messages):
    """Apply chat.Render's normalization of OpenAI-style messages."""
    out = copy.deepcopy(messages)
    for msg in out:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, list) and content and all(
            isinstance(p, dict) and p.get("type") == "text" for p in content
        ):
            msg["content"] = "\n".join(str(p.get("text", "")) for p in content)
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    try:
                        parsed = json.loads(fn["arguments"])
                    except ValueError:
                        continue
                    if isinstance(parsed, dict):
                        fn["arguments"] = parsed
    return out


def special_tokens_from_config(config):
    tokens = {}
    for key in SPECIAL_TOKEN_KEYS:
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            tokens[key] = value
    return tokens


def find_templates(paths, data_root):
    """Yields (relative_path, source, special_tokens_or_None) for each template."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(filenames):
                    if name.endswith(".jinja") or name == "tokenizer_config.json":
                        files.append(os.path.join(dirpath, name))
        elif os.path.isfile(path):
            files.append(path)
        else:
            sys.exit("no such template file or directory: %s" % path)
    seen = set()
    for path in files:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(data_root)).replace(os.sep, "/")
        if rel in seen:
            continue
        seen.add(rel)
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
            template = config.get("chat_template")
            if isinstance(template, list):
                named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
                template = named.get("default")
            if not isinstance(template, str):
                continue
            yield rel, template, special_tokens_from_config(config)
        else:
            with open(path, encoding="utf-8") as f:
                yield rel, f.read(), None


# --------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = repo_root()
    parser.add_argument("templates", nargs="*", help="template files or directories")
    parser.add_argument("--data-root", default=os.path.join(root, "..", "shared", "data"),
                        help="directory template paths are recorded relative to (default: ../shared/data)")
    parser.add_argument("--cases", default=os.path.join(root, "chat", "testdata", "cases.json"))
    parser.add_argument("--out", default=os.path.join(root, "chat", "testdata", "expected.json"))
    parser.add_argument("--snippets", default=os.path.join(root, "chat", "testdata", "snippets.json"))
    parser.add_argument("--snippets-out", default=os.path.join(root, "chat", "testdata", "snippets_expected.json"))
    parser.add_argument("--engine", choices=["transformers", "compile", "jinja2"], default=None)
    args = parser.parse_args()

    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    template_paths = args.templates or [
        os.path.join(args.data_root, "chat-templates"),
        os.path.join(args.data_root, "tokenizers"),
    ]
    render, engine = build_engine(args.engine)
    print("engine: %s" % engine)
    now = datetime.datetime.fromisoformat(cases["now"])

    def strftime_now(fmt):
        return now.strftime(fmt)

    results = []
    counts = {"expected": 0, "error": 0}
    for rel, source, tokens in find_templates(template_paths, args.data_root):
        settings = cases.get("templates", {}).get(rel, {})
        if tokens is None:
            tokens = settings.get("special_tokens", {})
        for case in cases["cases"]:
            variables = dict(settings.get("vars", {}))
            variables.update(case.get("vars", {}))
            kwargs = dict(tokens)
            kwargs.update(variables)
            kwargs["strftime_now"] = strftime_now
            tools = copy.deepcopy(cases["tools"]) if case.get("tools") else None
            messages = normalize_messages(case["messages"])
            entry = {
                "template": rel,
                "case": case["name"],
                "special_tokens": tokens,
                "vars": variables,
            }
            try:
                entry["expected"] = render(source, messages, tools, bool(case.get("add_generation_prompt")), kwargs)
                counts["expected"] += 1
            except Exception as e:  # noqa: BLE001 - any template failure is a result
                entry["error"] = "%s: %s" % (type(e).__name__, e)
                counts["error"] += 1
            results.append(entry)

    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("%s: wrote %d renders (%d ok, %d Python errors) with %s"
          % (args.out, len(results), counts["expected"], counts["error"], engine))

    if args.snippets and os.path.exists(args.snippets):
        with open(args.snippets, encoding="utf-8") as f:
            snippets = json.load(f)
        render_snippet, snippet_engine = build_snippet_engine(args.engine)
        out = []
        for snip in snippets:
            variables = dict(snip.get("vars", {}))
            variables["strftime_now"] = strftime_now
            entry = {"name": snip["name"]}
            try:
                entry["expected"] = render_snippet(snip["template"], variables)
            except Exception as e:  # noqa: BLE001
                entry["error"] = "%s: %s" % (type(e).__name__, e)
            out.append(entry)
        with open(args.snippets_out, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print("%s: wrote %d snippet renders with %s" % (args.snippets_out, len(out), snippet_engine))


if __name__ == "__main__":
    main()
