// Command marlin quantizes large language models and runs them: on the CPU
// everywhere and on NVIDIA GPUs, from Hugging Face folders (16-bit or
// quantized), with an OpenAI-compatible server.
//
//	marlin run [MODEL] [PROMPT]      stream a completion (the embedded model without MODEL)
//	marlin chat MODEL                interactive chat with the model's template
//	marlin serve [MODEL]             OpenAI-compatible HTTP server
//	marlin quantize MODEL OUT        write a quantized checkpoint
//	marlin perplexity MODEL --file F quality of a model on a text
//	marlin logits MODEL --ids 1,2,3  raw logits (verification)
//	marlin bench [MODEL]             prefill and decode speed
//	marlin inspect MODEL             architecture, tensors, formats, sizes
//	marlin tokenize MODEL TEXT       token ids of a text
//	marlin template MODEL --messages F   render the chat template
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

type command struct {
	name, usage, summary string
	run                  func(args []string) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

// errUsage marks errors caused by how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	os.Exit(mainErr(os.Args[1:]))
}

func mainErr(args []string) int {
	sort.Slice(commands, func(i, j int) bool { return commands[i].name < commands[j].name })
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:])
			var ue usageError
			switch {
			case err == nil:
				return 0
			case errors.Is(err, errHelp):
				return 0
			case errors.As(err, &ue):
				fmt.Fprintf(os.Stderr, "marlin %s: %v\nusage: marlin %s %s\n", c.name, err, c.name, c.usage)
				return 2
			default:
				fmt.Fprintf(os.Stderr, "marlin %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(os.Stderr, "marlin: unknown command %q\n\n", args[0])
	printUsage()
	return 2
}

func printUsage() {
	var b strings.Builder
	b.WriteString("marlin quantizes large language models and runs them fast.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-11s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'marlin COMMAND --help' for a command's flags.\n")
	fmt.Fprint(os.Stderr, b.String())
}
