package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/marlin-llm/marlin/chat"
	"github.com/marlin-llm/marlin/engine"
)

func init() {
	register(command{name: "chat", usage: "MODEL [--system TEXT] [flags]",
		summary: "interactive chat with the model's own chat template", run: chatCmd})
	register(command{name: "template", usage: "MODEL --messages FILE.json [--tools FILE.json]",
		summary: "render the model's chat template for OpenAI-style messages", run: templateCmd})
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func templateCmd(args []string) error {
	f := newFlags("template", "MODEL --messages FILE.json [--tools FILE.json]")
	msgFile := f.String("messages", "", "JSON array of OpenAI-style messages (- for stdin)")
	toolFile := f.String("tools", "", "JSON array of OpenAI-style tools")
	noGen := f.Bool("no-generation-prompt", false, "do not open the assistant's turn")
	variant := f.String("variant", "", "a named template of the model (e.g. tool_use)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *msgFile == "" {
		return usagef("want a MODEL folder and --messages")
	}
	t, err := loadTemplate(pos[0], *variant)
	if err != nil {
		return err
	}
	in := chat.Input{AddGenerationPrompt: !*noGen}
	if in.Messages, err = readJSONFile(*msgFile); err != nil {
		return err
	}
	if *toolFile != "" {
		if in.Tools, err = readJSONFile(*toolFile); err != nil {
			return err
		}
	}
	out, err := t.Render(in)
	if err != nil {
		return err
	}
	_, err = io.WriteString(os.Stdout, out)
	return err
}

func loadTemplate(dir, variant string) (*chat.Template, error) {
	t, err := chat.Load(dir)
	if err != nil {
		return nil, err
	}
	if variant != "" {
		v, ok := t.Variant(variant)
		if !ok {
			return nil, fmt.Errorf("%s: no chat template named %q (have %v)", dir, variant, t.Variants())
		}
		t = v
	}
	return t, nil
}

func readJSONFile(name string) (json.RawMessage, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s: not valid JSON", name)
	}
	return b, nil
}

func chatCmd(args []string) error {
	f := newFlags("chat", "MODEL [--system TEXT] [flags]")
	mo := addModelFlags(f)
	kvFlag := addKVTypeFlag(f)
	sf := addSamplingFlags(f, 0.7)
	system := f.String("system", "", "system prompt")
	ctxLen := f.Int("ctx", 0, "longest conversation, in tokens (0: the model's context length, shortened to what the memory holds)")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	kvType, err := kvFlag()
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("want one MODEL folder")
	}
	dir := ""
	if len(pos) == 1 {
		dir = pos[0]
	}
	s, err := mo.open(dir, true)
	if err != nil {
		return err
	}
	defer s.Close()
	tmpl, err := chat.Load(s.dir)
	if err != nil {
		return err
	}
	info := s.m.Info()
	e, err := engine.New(s.m, s.be, engine.Config{MaxSeqs: 1, ContextLength: *ctxLen, KVType: kvTypeFor(kvType, s.be)})
	if err != nil {
		return err
	}
	defer e.Close()
	stops := append([]int32(nil), info.EOS...)
	if id, ok := s.tok.EOS(); ok && !contains(stops, id) {
		stops = append(stops, id)
	}
	var msgs []chatMessage
	if *system != "" {
		msgs = append(msgs, chatMessage{"system", *system})
	}
	in := bufio.NewReader(os.Stdin)
	fmt.Fprintln(os.Stderr, "chat with", s.dir, "— /reset clears the conversation, /exit or Ctrl-D quits")
	for {
		fmt.Fprint(os.Stderr, "> ")
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(os.Stderr)
			return nil
		}
		line = strings.TrimSpace(line)
		switch line {
		case "":
			continue
		case "/exit", "/quit":
			return nil
		case "/reset":
			msgs = msgs[:0]
			if *system != "" {
				msgs = append(msgs, chatMessage{"system", *system})
			}
			continue
		}
		msgs = append(msgs, chatMessage{"user", line})
		raw, _ := json.Marshal(msgs)
		prompt, err := tmpl.Render(chat.Input{Messages: raw, AddGenerationPrompt: true})
		if err != nil {
			return err
		}
		ids := s.tok.Encode(prompt, false) // the template writes any BOS itself
		if len(ids) >= e.ContextLength() {
			fmt.Fprintln(os.Stderr, "the conversation no longer fits the context; /reset to start over")
			msgs = msgs[:len(msgs)-1]
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		events, err := e.Submit(ctx, engine.Request{Prompt: ids, MaxTokens: sf.maxTokens, Sampling: sf.sampling(), StopIDs: stops, Logprobs: -1})
		if err != nil {
			stop()
			return err
		}
		dec := s.tok.NewStreamDecoder(true)
		matcher := engine.NewStopMatcher(sf.stops)
		var reply strings.Builder
		stopped := false
		for ev := range events {
			if ev.Done || stopped {
				continue
			}
			chunk, hit := matcher.Push(dec.Next(ev.Token))
			reply.WriteString(chunk)
			fmt.Print(chunk)
			stopped = hit
		}
		if !stopped {
			chunk, _ := matcher.Push(dec.Flush())
			chunk += matcher.Flush()
			reply.WriteString(chunk)
			fmt.Print(chunk)
		}
		stop()
		fmt.Println()
		msgs = append(msgs, chatMessage{"assistant", strings.TrimSpace(reply.String())})
	}
}
