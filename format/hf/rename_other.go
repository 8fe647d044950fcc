//go:build !linux

package hf

// renameExchange would atomically swap a and b; this system cannot, and the
// caller falls back to two renames.
func renameExchange(a, b string) (ok bool, err error) { return false, nil }

// renameNoReplace would rename a to b unless b exists; this system cannot,
// and the caller checks and renames.
func renameNoReplace(a, b string) (ok bool, err error) { return false, nil }
