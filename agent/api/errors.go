package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/rekeyd/rekey/store"
)

// errorCodes maps sentinels to HTTP statuses and stable codes, in the order
// they are checked.
var errorCodes = []struct {
	err    error
	status int
	code   string
}{
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrWrongPassword, http.StatusUnprocessableEntity, "wrong_password"},
	{ErrPasswordRequired, http.StatusUnprocessableEntity, "password_required"},
	{ErrNeedsChoice, http.StatusConflict, "needs_choice"},
	{ErrInvalid, http.StatusBadRequest, "invalid_request"},
	{ErrBusy, http.StatusConflict, "busy"},
	{ErrNotApplied, http.StatusUnprocessableEntity, "not_applied"},
	{ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
	{ErrDropped, http.StatusServiceUnavailable, "events_dropped"},
	{store.ErrNotFound, http.StatusNotFound, "not_found"},
	{store.ErrBadQuery, http.StatusBadRequest, "invalid_request"},
	{store.ErrState, http.StatusConflict, "conflict"},
	{store.ErrImportConflict, http.StatusConflict, "import_conflict"},
	{store.ErrInvariant, http.StatusConflict, "invariant"},
}

// Codes of answers that have no sentinel.
const (
	codeTooLarge     = "body_too_large"
	codeNoEndpoint   = "no_endpoint"
	codeBadMethod    = "method_not_allowed"
	codeShuttingDown = "shutting_down"
	codeInternal     = "internal"
)

// classify returns the HTTP status and code for err.
func classify(err error) (int, string) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge, codeTooLarge
	}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.status, c.code
		}
	}
	return http.StatusInternalServerError, codeInternal
}

// APIError is an error answer as the client sees it. It unwraps to the
// sentinel of its code, so errors.Is(err, api.ErrWrongPassword) works.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

// Unwrap returns the sentinel of the code, or nil.
func (e *APIError) Unwrap() error {
	for _, c := range errorCodes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	newEncoder(w).Encode(v)
}

// newEncoder encodes every answer the same way, indented, but device pages
// (encodeDevicePage, compact).
func newEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc
}

// Header values every encoded answer carries, shared (never modified).
var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
)

// writeBody writes an answer encoded beforehand (EncodeStatus).
func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Cache-Control"] = noStore
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

func writeError(w http.ResponseWriter, err error) {
	status, code := classify(err)
	msg := err.Error()
	if code == codeTooLarge {
		msg = fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes)
	}
	writeJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// jsonStatusWriter turns the mux's plain-text 404/405 answers into JSON.
type jsonStatusWriter struct {
	http.ResponseWriter
	done bool
}

func (w *jsonStatusWriter) WriteHeader(status int) {
	if w.done {
		return
	}
	w.done = true
	code, msg := codeNoEndpoint, "no such endpoint; see docs/api.md for the list"
	if status == http.StatusMethodNotAllowed {
		code, msg = codeBadMethod, "method not allowed on this endpoint; allowed: "+w.Header().Get("Allow")
	}
	w.Header().Del("X-Content-Type-Options")
	writeJSON(w.ResponseWriter, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

func (w *jsonStatusWriter) Write(p []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return len(p), nil
}
