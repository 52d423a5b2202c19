package api

import (
	"encoding/json"
	"net/http"
	"time"
)

// handleEvents streams events as newline-delimited JSON, one flushed line per
// event, until the client leaves or the server stops. A client too slow to
// keep up is dropped: its stream ends with an error line (code
// events_dropped) and it should reconnect.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// ReadTimeout does not end the stream: net/http clears the read
	// deadline once the request is read (TestEventStreamOutlivesTheReadTimeout).
	ch, cancel := s.cfg.Backend.Subscribe(s.cfg.EventBuffer)
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			s.endStream(rc, enc, codeShuttingDown, "the agent is stopping")
			return
		case e, ok := <-ch:
			if !ok {
				s.endStream(rc, enc, "events_dropped", ErrDropped.Error()+"; reconnect to follow again")
				return
			}
			rc.SetWriteDeadline(time.Now().Add(s.cfg.EventWriteTimeout))
			if enc.Encode(e) != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func (s *Server) endStream(rc *http.ResponseController, enc *json.Encoder, code, msg string) {
	rc.SetWriteDeadline(time.Now().Add(s.cfg.EventWriteTimeout))
	enc.Encode(ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
	rc.Flush()
}
