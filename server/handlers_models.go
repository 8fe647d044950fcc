package server

import (
	"encoding/json"
	"net/http"
	"strings"
)

func (m *served) object() modelObject {
	return modelObject{ID: m.Name, Object: "model", Created: m.Created.Unix(), OwnedBy: "marlin", MaxModelLen: m.ctxLen}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	m := s.current(w)
	if m == nil {
		return
	}
	writeJSON(w, http.StatusOK, modelList{Object: "list", Data: []modelObject{m.object()}})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	m := s.current(w)
	if m == nil {
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/v1/models/")
	if name != m.Name {
		writeError(w, modelNotFound(name, m.Name))
		return
	}
	writeJSON(w, http.StatusOK, m.object())
}

// checkModel accepts the served model's exact name, or no name at all.
func checkModel(name string, m *served) *apiError {
	if name == "" || name == m.Name {
		return nil
	}
	return modelNotFound(name, m.Name)
}

func modelNotFound(name, served string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeNotFound, Param: "model", Code: "model_not_found",
		Message: "the model " + quote(name) + " does not exist; this server serves " + quote(served)}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, &apiError{Status: http.StatusInternalServerError, Type: typeServer, Message: "encoding the response: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
