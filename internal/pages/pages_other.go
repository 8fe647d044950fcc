//go:build !unix

package pages

func release(data []byte) {}
