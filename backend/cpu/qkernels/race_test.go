//go:build race

package qkernels

const raceEnabled = true
