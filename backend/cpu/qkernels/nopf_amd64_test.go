//go:build amd64 && !purego

package qkernels

func setNoPrefetch(b bool) { gptqNoPrefetch = b }

func setSubRows(n int) { gptqSubRows = n }

func setPrefetchSubs(n int) { gptqPrefetchSubs = n }
