package engine

import "strings"

// StopMatcher finds stop strings in text that arrives in pieces. Push
// returns the text that is safe to show: it holds back any tail that could
// be the beginning of a stop string, and once a stop string is complete it
// returns the text before it and reports the stop. The stop string itself is
// never returned (OpenAI's convention).
type StopMatcher struct {
	stops   []string
	pending string
	stopped bool
}

// NewStopMatcher returns a matcher for the non-empty strings in stops.
func NewStopMatcher(stops []string) *StopMatcher {
	m := &StopMatcher{}
	for _, s := range stops {
		if s != "" {
			m.stops = append(m.stops, s)
		}
	}
	return m
}

// Push adds text and returns what can be emitted, and whether a stop string
// was completed (after which Push returns nothing).
func (m *StopMatcher) Push(text string) (string, bool) {
	if m.stopped {
		return "", true
	}
	if len(m.stops) == 0 {
		return text, false
	}
	m.pending += text
	first := -1
	for _, s := range m.stops {
		if i := strings.Index(m.pending, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	if first >= 0 {
		out := m.pending[:first]
		m.pending, m.stopped = "", true
		return out, true
	}
	// hold back the longest suffix that is a prefix of some stop string
	hold := 0
	for _, s := range m.stops {
		for n := min(len(s)-1, len(m.pending)); n > hold; n-- {
			if strings.HasSuffix(m.pending, s[:n]) {
				hold = n
				break
			}
		}
	}
	out := m.pending[:len(m.pending)-hold]
	m.pending = m.pending[len(m.pending)-hold:]
	return out, false
}

// Flush returns the held-back text at the end of generation.
func (m *StopMatcher) Flush() string {
	out := m.pending
	m.pending = ""
	return out
}
