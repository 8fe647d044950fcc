package chat

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// renderSnippet renders source with exactly the given variables (a JSON
// object, key order kept) plus a fixed strftime_now, like
// scripts/chat_reference.py does for snippets.
func renderSnippet(source string, vars json.RawMessage, now time.Time) (string, error) {
	t, err := New(source, nil)
	if err != nil {
		return "", err
	}
	st := &renderState{}
	data := st.globals(func() time.Time { return now })
	if len(vars) > 0 {
		v, err := decodeJSON(vars)
		if err != nil {
			return "", err
		}
		d, ok := v.(pyDict)
		if !ok {
			return "", fmt.Errorf("vars: want an object")
		}
		for _, it := range d {
			data[it.Key.(string)] = it.Value
		}
	}
	var b strings.Builder
	execErr := t.tpl.Execute(&b, exec.NewContext(data))
	if st.err != nil {
		return "", st.err
	}
	if execErr != nil {
		return "", execErr
	}
	return b.String(), nil
}
