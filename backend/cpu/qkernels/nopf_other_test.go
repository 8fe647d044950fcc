//go:build !amd64 || purego

package qkernels

func setNoPrefetch(b bool) {}

func setSubRows(n int) {}

func setPrefetchSubs(n int) {}
