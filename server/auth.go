package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authorized checks the API key, answering 401 when it is missing or
// wrong. The key is compared in constant time (on SHA-256 digests, so that
// its length does not leak either).
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.APIKey == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="marlin"`)
		writeError(w, &apiError{Status: http.StatusUnauthorized, Type: typeAuthentication, Code: "invalid_api_key",
			Message: "missing API key: send it as \"Authorization: Bearer KEY\""})
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(key)))
	want := sha256.Sum256([]byte(s.opts.APIKey))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="marlin", error="invalid_token"`)
		writeError(w, &apiError{Status: http.StatusUnauthorized, Type: typeAuthentication, Code: "invalid_api_key",
			Message: "invalid API key"})
		return false
	}
	return true
}

// cors sets the CORS headers for an allowed origin and answers preflight
// requests; it reports whether the request was answered. Without
// configured origins it does nothing.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	if len(s.opts.CORSOrigins) == 0 {
		return false
	}
	origin := r.Header.Get("Origin")
	w.Header().Add("Vary", "Origin")
	if origin == "" {
		return false
	}
	allowed := ""
	for _, o := range s.opts.CORSOrigins {
		if o == "*" {
			allowed = "*"
			break
		}
		if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			allowed = origin
			break
		}
	}
	if allowed == "" {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", allowed)
	h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, OpenAI-Organization, OpenAI-Project, X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Retry-Count, X-Stainless-Timeout")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}
