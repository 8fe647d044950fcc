package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Error types of OpenAI's error object.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typeNotFound       = "not_found_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
	typeUnavailable    = "service_unavailable_error"
	typeTimeout        = "timeout_error"
)

// apiError is an error the API answers with: an HTTP status and the fields
// of OpenAI's error object.
type apiError struct {
	Status  int
	Message string
	Type    string
	Param   string // the offending request field, "" when none
	Code    string // a machine-readable code, "" when none
	// RetryAfter, when > 0, is sent as a Retry-After header (seconds).
	RetryAfter int
}

func (e *apiError) Error() string { return e.Message }

// badRequest is a 400 about the request field param ("" for the request as
// a whole).
func badRequest(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

// unsupported is a 400 for a field the server understands but does not
// implement.
func unsupported(param, format string, args ...any) *apiError {
	e := badRequest(param, format, args...)
	e.Code = "unsupported_parameter"
	return e
}

// errorBody is the JSON OpenAI clients parse: {"error": {...}}. Param and
// code are null when unset, as in OpenAI's responses.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) body() errorBody {
	o := errorObject{Message: e.Message, Type: e.Type}
	if e.Param != "" {
		o.Param = &e.Param
	}
	if e.Code != "" {
		o.Code = &e.Code
	}
	return errorBody{o}
}

// writeError answers with e as JSON.
func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status == http.StatusGatewayTimeout {
		// the OpenAI clients retry 5xx answers; a deadline would only expire again
		h.Set("X-Should-Retry", "false")
	}
	w.WriteHeader(e.Status)
	b, _ := json.Marshal(e.body())
	w.Write(append(b, '\n'))
}
