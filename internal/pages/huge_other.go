//go:build !linux

package pages

// huge has no huge-page allocation to offer here: the Go heap serves.
func huge(n int) ([]byte, func()) { return nil, nil }
