package webhook

import (
	"encoding/json"
	"net/http"
)

// errorBody is the JSON every refusal carries.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg, detail string) {
	writeJSON(w, status, errorBody{Error: msg, Detail: detail})
}
