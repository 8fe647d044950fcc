//go:build linux

package hf

import (
	"errors"

	"golang.org/x/sys/unix"
)

// renameExchange atomically swaps the directory entries a and b. ok is false
// when the file system cannot do it (the caller falls back to two renames).
func renameExchange(a, b string) (ok bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if unsupported(err) {
		return false, nil
	}
	return true, err
}

// renameNoReplace renames a to b unless b exists. ok is false when the file
// system cannot do it.
func renameNoReplace(a, b string) (ok bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE)
	if unsupported(err) {
		return false, nil
	}
	return true, err
}

func unsupported(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}
