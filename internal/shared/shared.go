// Package shared locates the project's shared test data, ../shared/data
// beside the repository (real tokenizers, a real model, text corpora). A
// user's clone has none: tests then skip with a message.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

// Root returns the repository root (the folder holding go.mod) above the
// working directory, or "" when there is none.
func Root() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Data returns the path of ../shared/data beside the repository, or skips
// the test when it is absent.
func Data(t testing.TB) string {
	t.Helper()
	root := Root()
	if root == "" {
		t.Skip("no go.mod above the working directory: cannot locate ../shared/data")
	}
	d := filepath.Join(root, "..", "shared", "data")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("shared test data not found at %s (a fresh clone has no ../shared/data)", d)
	}
	return d
}
