// Package pages releases the resident pages of memory-mapped file data that
// a process has finished reading.
package pages

// Release tells the operating system that the pages under data (a slice of
// a read-only file mapping) are not needed now: they leave the process's
// resident set and are read from the file again if touched later. Pages
// shared with neighbouring data are treated the same way, which is safe
// for a file mapping (they are simply read again). It must never be called
// on heap or other anonymous memory, whose contents it would discard. It
// does nothing where the platform has no such hint.
func Release(data []byte) {
	if len(data) > 0 {
		release(data)
	}
}
