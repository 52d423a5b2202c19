package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/rekeyd/rekey/store"
)

// requestTimeout bounds writing the answer of every endpoint but /v1/events.
const requestTimeout = 30 * time.Second

// Device page sizes.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", s.handleHealth)
	mux.Handle("GET /v1/status", s.admin(s.handleStatus))
	mux.Handle("GET /v1/credentials", s.admin(s.handleCredentials))
	mux.Handle("GET /v1/tenants", s.admin(s.handleTenants))
	mux.Handle("POST /v1/tenants", s.admin(s.handleAdd))
	mux.Handle("POST /v1/tenants/{id}/rotate", s.admin(s.handleRotate))
	mux.Handle("POST /v1/credentials/{id}/check", s.admin(s.handleCheck))
	mux.Handle("GET /v1/tenants/{id}/devices", s.admin(s.handleDevices))
	mux.Handle("POST /v1/tenants/{id}/rollback", s.admin(s.handleRollback))
	mux.Handle("POST /v1/tenants/{id}/sync", s.admin(s.handleSync))
	mux.Handle("GET /v1/imports", s.admin(s.handleImports))
	mux.Handle("GET /v1/imports/{id}", s.admin(s.handleImport))
	mux.Handle("POST /v1/imports/{id}/unlock", s.admin(s.handleUnlock))
	mux.Handle("POST /v1/imports/{id}/dismiss", s.admin(s.handleDismiss))
	mux.Handle("POST /v1/imports/{id}/retry", s.admin(s.handleRetry))
	mux.Handle("GET /v1/rotations", s.admin(s.handleRotations))
	mux.Handle("GET /v1/events", s.admin(s.handleEvents))
	status := s.admin(s.handleStatus)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		if r.URL.Path != "/v1/events" {
			http.NewResponseController(w).SetWriteDeadline(time.Now().Add(requestTimeout))
		}
		if r.Method == http.MethodGet && r.URL.Path == "/v1/status" {
			status.ServeHTTP(w, r) // the endpoint polled most: one comparison instead of routing twice
			return
		}
		if _, pattern := mux.Handler(r); pattern == "" {
			// The mux's own 404 and 405 answers are plain text; ours are JSON.
			mux.ServeHTTP(&jsonStatusWriter{ResponseWriter: w}, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// admin guards a handler with the authorisation rule.
func (s *Server) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, err := s.authorised(r); err != nil {
			s.refused.add(p.UID, p.PID, r.Method, r.URL.Path)
			writeError(w, err)
			return
		}
		h(w, r)
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok", Version: s.cfg.Version})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if enc, ok := s.cfg.Backend.(StatusEncoder); ok {
		body, err := enc.StatusJSON(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeBody(w, http.StatusOK, body)
		return
	}
	st, err := s.cfg.Backend.Status(r.Context())
	st.Tenants, st.PendingImports = nonNil(st.Tenants), nonNil(st.PendingImports)
	answer(w, st, err)
}

func (s *Server) handleCredentials(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Credentials(r.Context())
	answer(w, map[string]any{"credentials": nonNil(v)}, err)
}

func (s *Server) handleTenants(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Tenants(r.Context())
	answer(w, map[string]any{"tenants": nonNil(v)}, err)
}

func (s *Server) handleImports(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Imports(r.Context())
	answer(w, map[string]any{"imports": nonNil(v)}, err)
}

func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Import(r.Context(), r.PathValue("id"))
	answer(w, v, err)
}

func (s *Server) handleRotations(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Rotations(r.Context())
	answer(w, map[string]any{"rotations": nonNil(v)}, err)
}

func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request) {
	q, err := DeviceQueryOf(r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	streamDevices(w, r, s.cfg.Backend, r.PathValue("id"), q)
}

func (s *Server) handleUnlock(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	req, err := readUnlock(r)
	defer req.Password.Wipe()
	if err != nil {
		writeError(w, err)
		return
	}
	// The attempt is counted before the password is tried: parallel guesses
	// wait their turn or are refused, never all tried at once.
	res, wait, err := s.cfg.Limiter.Reserve(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	if res == nil {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, fmt.Errorf("%w: import %s is locked for %ds (repeated wrong passwords, or another unlock of it is running)", ErrRateLimited, id, secs))
		return
	}
	imp, err := s.cfg.Backend.Unlock(r.Context(), id, req)
	switch {
	case errors.Is(err, ErrWrongPassword):
		res.Failed()
	case err == nil:
		res.Succeeded()
	default:
		res.Cancel()
	}
	answer(w, imp, err)
}

// readUnlock reads and checks an unlock body, wiping the raw bytes it read.
func readUnlock(r *http.Request) (UnlockRequest, error) {
	var req UnlockRequest
	buf, err := readSecretBody(r.Body)
	defer clear(buf)
	if err != nil {
		return req, fmt.Errorf("read request body: %w", err)
	}
	if len(buf) > 0 {
		if err := json.Unmarshal(buf, &req); err != nil {
			req.Password.Wipe()
			return UnlockRequest{}, fmt.Errorf("%w: the body must be a JSON object {\"password\", \"intent\", \"target\"}", ErrInvalid)
		}
	}
	switch req.Intent {
	case "", "add", "update":
	case "auto":
		req.Intent = ""
	default:
		return req, fmt.Errorf("%w: intent %q must be \"add\", \"update\" or empty", ErrInvalid, req.Intent)
	}
	if req.Intent == "add" && req.Target != "" {
		return req, fmt.Errorf("%w: a target is only for intent \"update\"", ErrInvalid)
	}
	return req, nil
}

func (s *Server) handleDismiss(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Backend.Dismiss(r.Context(), r.PathValue("id"))
	answer(w, v, err)
}

func (s *Server) handleRollback(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.cfg.Backend.Rollback(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	st, err := s.cfg.Backend.Status(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	for _, t := range st.Tenants {
		if t.ID == id {
			writeJSON(w, http.StatusOK, t)
			return
		}
	}
	writeError(w, fmt.Errorf("tenant %s after rollback: %w", id, store.ErrNotFound))
}

func (s *Server) handleSync(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.cfg.Backend.Sync(r.Context(), id); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, SyncAnswer{TenantID: id, Started: true})
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}
