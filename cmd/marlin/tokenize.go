package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/marlin-llm/marlin/tokenizer"
)

func init() {
	register(command{name: "tokenize", usage: "MODEL TEXT [--json] [--special]",
		summary: "token ids of a text (MODEL may hold only tokenizer files)", run: tokenizeCmd})
}

func tokenizeCmd(args []string) error {
	f := newFlags("tokenize", "MODEL TEXT [--json] [--special]")
	asJSON := f.Bool("json", false, `print {"ids":[...]}`)
	special := f.Bool("special", false, "add BOS/EOS as the tokenizer's post-processor says")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usagef("want a MODEL folder and a TEXT (- reads stdin)")
	}
	text := strings.Join(pos[1:], " ")
	if text == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		text = string(b)
	}
	tok, err := tokenizer.Load(pos[0])
	if err != nil {
		return err
	}
	ids := tok.Encode(text, *special)
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"ids": ids})
	}
	for _, id := range ids {
		fmt.Printf("%6d  %q\n", id, tok.Token(id))
	}
	return nil
}
