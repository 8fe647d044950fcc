package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

var errHelp = errors.New("help requested")

// flags wraps a flag.FlagSet so that flags may come before, between or after
// positional arguments ("marlin run MODEL 'prompt' -n 20") and both -x and
// --x spellings work.
type flags struct {
	*flag.FlagSet
	cmd, usage string
}

func newFlags(cmd, usage string) *flags {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flags{FlagSet: fs, cmd: cmd, usage: usage}
}

// set reports whether the flag name was given on the command line.
func (f *flags) set(name string) bool {
	found := false
	f.Visit(func(fl *flag.Flag) { found = found || fl.Name == name })
	return found
}

// parse separates flags from positional arguments and parses the flags.
func (f *flags) parse(args []string) ([]string, error) {
	var flagArgs, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		if name == "h" || name == "help" {
			f.printHelp()
			return nil, errHelp
		}
		flagArgs = append(flagArgs, a)
		if strings.Contains(name, "=") {
			continue
		}
		fl := f.Lookup(name)
		if fl == nil {
			return nil, usagef("unknown flag %s", a)
		}
		if bf, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 >= len(args) {
			return nil, usagef("flag %s needs a value", a)
		}
		i++
		flagArgs = append(flagArgs, args[i])
	}
	if err := f.Parse(flagArgs); err != nil {
		return nil, usagef("%v", err)
	}
	return pos, nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func (f *flags) printHelp() {
	fmt.Fprintf(os.Stderr, "usage: marlin %s %s\n\nflags:\n", f.cmd, f.usage)
	f.VisitAll(func(fl *flag.Flag) {
		name, u := flag.UnquoteUsage(fl)
		if name != "" {
			name = " " + name
		}
		def := ""
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" && fl.DefValue != "[]" {
			def = fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		fmt.Fprintf(os.Stderr, "  --%s%s\n        %s%s\n", fl.Name, name, u, def)
	})
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// parseIDs parses "1,2,3" into token ids.
func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil || v < 0 {
			return nil, usagef("bad token id %q in --ids", f)
		}
		ids = append(ids, int32(v))
	}
	if len(ids) == 0 {
		return nil, usagef("--ids is empty")
	}
	return ids, nil
}
