package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeJSON decodes JSON text into Python values, keeping object key order
// (Python dicts are insertion ordered and templates print them in that
// order). Integers become int, other numbers float64, null None.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

const maxJSONDepth = 512

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := pyDict{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %T, not a string", kt)
				}
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				d = setKey(d, k, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return d, nil
		case '[':
			l := pyList{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return l, nil
		}
		return nil, fmt.Errorf("unexpected delimiter %q", t)
	case nil:
		return pyNone, nil
	case bool, string:
		return t, nil
	case json.Number:
		return numberValue(string(t)), nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// setKey sets k in d in place (JSON objects: a repeated key keeps its first
// position and takes the last value, as Python's json module does).
func setKey(d pyDict, k string, v any) pyDict {
	for i := range d {
		if s, ok := d[i].Key.(string); ok && s == k {
			d[i].Value = v
			return d
		}
	}
	return append(d, dictItem{k, v})
}

func numberValue(s string) any {
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return int(i)
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		// Out of float range: Python gives inf.
		if strings.HasPrefix(s, "-") {
			return math.Inf(-1)
		}
		return math.Inf(1)
	}
	return f
}

// jsonOptions are the json.dumps arguments transformers' tojson filter
// exposes.
type jsonOptions struct {
	indent      *string // nil: single line
	itemSep     string
	keySep      string
	sortKeys    bool
	ensureASCII bool
}

// pyJSONDumps is json.dumps(v, ensure_ascii, indent, separators, sort_keys).
func pyJSONDumps(v any, o jsonOptions) (string, error) {
	var b strings.Builder
	if err := writeJSON(&b, v, o, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeJSON(b *strings.Builder, v any, o jsonOptions, depth int) error {
	if depth > 1000 {
		return errors.New("ValueError: Circular reference detected")
	}
	switch x := v.(type) {
	case noneType:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int:
		b.WriteString(strconv.Itoa(x))
	case float64:
		b.WriteString(jsonFloat(x))
	case string:
		writeJSONString(b, x, o.ensureASCII)
	case pyList:
		return writeJSONArray(b, x, o, depth)
	case pyTuple:
		return writeJSONArray(b, x, o, depth)
	case pyDict:
		if len(x) == 0 {
			b.WriteString("{}")
			return nil
		}
		items := x
		if o.sortKeys {
			items = append(pyDict(nil), x...)
			var sortErr error
			sort.SliceStable(items, func(i, j int) bool {
				c, err := pyCompare(items[i].Key, items[j].Key, "<")
				if err != nil && sortErr == nil {
					sortErr = errors.New(err.Error())
				}
				return c < 0
			})
			if sortErr != nil {
				return sortErr
			}
		}
		b.WriteByte('{')
		for i, it := range items {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			writeNewline(b, o, depth+1)
			var key string
			switch k := it.Key.(type) {
			case string:
				key = k
			case bool:
				key = map[bool]string{true: "true", false: "false"}[k]
			case int:
				key = strconv.Itoa(k)
			case float64:
				key = jsonFloat(k)
			case noneType:
				key = "null"
			default:
				return fmt.Errorf("TypeError: keys must be str, int, float, bool or None, not %s", typeName(it.Key))
			}
			writeJSONString(b, key, o.ensureASCII)
			b.WriteString(o.keySep)
			if err := writeJSON(b, it.Value, o, depth+1); err != nil {
				return err
			}
		}
		writeNewline(b, o, depth)
		b.WriteByte('}')
	default:
		return fmt.Errorf("TypeError: Object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

func writeJSONArray(b *strings.Builder, items []any, o jsonOptions, depth int) error {
	if len(items) == 0 {
		b.WriteString("[]")
		return nil
	}
	b.WriteByte('[')
	for i, e := range items {
		if i > 0 {
			b.WriteString(o.itemSep)
		}
		writeNewline(b, o, depth+1)
		if err := writeJSON(b, e, o, depth+1); err != nil {
			return err
		}
	}
	writeNewline(b, o, depth)
	b.WriteByte(']')
	return nil
}

func writeNewline(b *strings.Builder, o jsonOptions, depth int) {
	if o.indent == nil {
		return
	}
	b.WriteByte('\n')
	for range depth {
		b.WriteString(*o.indent)
	}
}

// jsonFloat is float.__repr__ with json's spelling of the special values.
func jsonFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return floatRepr(f)
}

// writeJSONString quotes s like Python's json encoder.
func writeJSONString(b *strings.Builder, s string, ensureASCII bool) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		i += w
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(b, `\u%04x`, r)
			case ensureASCII && r > 0x7e:
				if r >= 0x10000 {
					r -= 0x10000
					fmt.Fprintf(b, `\u%04x\u%04x`, 0xd800|(r>>10), 0xdc00|(r&0x3ff))
				} else {
					fmt.Fprintf(b, `\u%04x`, r)
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}
