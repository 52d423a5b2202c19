package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/rekeyd/rekey/platform"
)

// MaxBodyBytes bounds every request body; larger bodies get 413.
const MaxBodyBytes = 64 << 10

// Timeouts of a connection: the request header must arrive within
// HeaderTimeout, and a kept-alive connection with no request is closed after
// IdleTimeout.
const (
	HeaderTimeout = 3 * time.Second
	IdleTimeout   = 10 * time.Second
)

// Config configures a Server. Backend is required.
type Config struct {
	Backend Backend
	Version string // reported by /v1/health
	// AgentUID is the agent's own uid, always authorised (default os.Geteuid()).
	AgentUID *int
	// AdminGroup's members are authorised (default none; the agent passes
	// platform.Paths.AdminGroup or --admin-group).
	AdminGroup string
	// Authorize replaces the default rule (root, AgentUID, AdminGroup) when set.
	Authorize func(platform.Peer) bool
	// Limiter rate-limits wrong passwords per import (default NewLimiter()).
	Limiter *Limiter
	// EventBuffer is each event subscriber's buffer (default 256).
	EventBuffer int
	// EventWriteTimeout bounds one event write to a client (default 10s).
	EventWriteTimeout time.Duration
	// MaxConns bounds open connections (default DefaultMaxConns; the agent
	// derives it from its file-descriptor limit). ReservedConns of them are
	// for root and AgentUID only (default a quarter); every other uid may
	// hold at most MaxConnsPerUID (default DefaultMaxConnsPerUID). A
	// connection over its limit is closed at once.
	MaxConns, ReservedConns, MaxConnsPerUID int
	// RefusalSummary is how often refused requests are logged: one line per
	// uid with a count (default 1 minute).
	RefusalSummary time.Duration
	Logger         *slog.Logger
}

// Server is the local API server.
type Server struct {
	cfg      Config
	http     *http.Server
	stopping chan struct{} // closed when Shutdown begins; ends event streams
	refused  refusals
	stopLog  chan struct{} // closed by Shutdown; ends the refusal summaries
	stopOnce sync.Once
}

type peerKey struct{}

// peerResult is what ConnContext stashes: the peer or why it is unknown.
type peerResult struct {
	peer platform.Peer
	err  error
}

// New builds a server; call Listen and Serve, then Shutdown.
func New(cfg Config) *Server {
	if cfg.AgentUID == nil {
		uid := os.Geteuid()
		cfg.AgentUID = &uid
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter()
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 256
	}
	if cfg.EventWriteTimeout <= 0 {
		cfg.EventWriteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.ReservedConns <= 0 || cfg.ReservedConns >= cfg.MaxConns {
		cfg.ReservedConns = max(cfg.MaxConns/4, 1)
	}
	if cfg.MaxConnsPerUID <= 0 {
		cfg.MaxConnsPerUID = DefaultMaxConnsPerUID
	}
	if cfg.RefusalSummary <= 0 {
		cfg.RefusalSummary = time.Minute
	}
	s := &Server{cfg: cfg, stopping: make(chan struct{}), stopLog: make(chan struct{}),
		refused: refusals{log: cfg.Logger}}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: HeaderTimeout,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		// No WriteTimeout: /v1/events streams for as long as the client
		// stays; routes sets every other answer's deadline (requestTimeout).
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if lc, ok := c.(*limitedConn); ok {
				return context.WithValue(ctx, peerKey{}, lc.peer)
			}
			p, err := platform.PeerOf(c)
			return context.WithValue(ctx, peerKey{}, peerResult{p, err})
		},
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	var once sync.Once
	s.http.RegisterOnShutdown(func() { once.Do(func() { close(s.stopping) }) })
	return s
}

// ErrSocketInUse is returned by Listen when another process answers on the path.
var ErrSocketInUse = errors.New("another process (a rekey agent or another program) is listening on the socket")

// ErrNotSocket is returned by Listen when the path holds something other than a socket.
var ErrNotSocket = errors.New("socket path is taken by something that is not a socket")

// Listen creates the Unix socket at path with mode 0666 (every local user may
// connect; each request is authorised by its peer's credentials). An existing
// socket that nobody answers on is removed first; a live one or any other kind
// of file is refused and left alone. A missing socket folder (such as
// /run/rekey outside systemd, which otherwise makes it) is created 0755; its
// parent must exist.
func Listen(path string) (net.Listener, error) {
	if err := socketDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("set mode of socket %s: %w", path, err)
	}
	return l, nil
}

// socketDir creates dir when it is missing, mode 0755 whatever the umask, so
// that every local user reaches the socket in it.
func socketDir(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create socket folder %s: %w; create its parent or choose another --socket", dir, err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("set mode of socket folder %s: %w", dir, err)
	}
	return nil
}

func clearStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check socket path %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w: %s is a %s; remove it or choose another --socket", ErrNotSocket, path, platform.FileKind(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: %s; stop it first (rekey stop) or choose another --socket", ErrSocketInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		// Not provably stale (no permission to connect, a timeout...): leave it.
		return fmt.Errorf("check socket %s: %w; remove it by hand if no agent uses it", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// Serve answers requests on l until Shutdown; it returns nil after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	go s.refused.run(s.cfg.RefusalSummary, s.stopLog)
	lim := &connLimiter{max: s.cfg.MaxConns, reserved: s.cfg.ReservedConns, perUID: s.cfg.MaxConnsPerUID,
		privileged: func(uid int) bool { return uid == 0 || uid == *s.cfg.AgentUID }}
	l = &limitListener{Listener: l, lim: lim, peerOf: platform.PeerOf,
		refused: func(p platform.Peer) { s.refused.add(p.UID, p.PID, "CONNECT", "(connection limit)") }}
	if err := s.http.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve local API: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections, ends event streams and waits for
// requests in flight until ctx ends, then closes what remains.
func (s *Server) Shutdown(ctx context.Context) error {
	defer func() {
		s.stopOnce.Do(func() { close(s.stopLog) })
		s.refused.flush(s.cfg.RefusalSummary)
	}()
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
		return fmt.Errorf("shut down local API: %w", err)
	}
	return nil
}

// authorised applies the configured rule to the request's peer.
func (s *Server) authorised(r *http.Request) (platform.Peer, error) {
	pr, _ := r.Context().Value(peerKey{}).(peerResult)
	if pr.err != nil {
		return platform.Peer{UID: -1, GID: -1, PID: -1}, fmt.Errorf("%w: cannot read the caller's credentials: %v", ErrForbidden, pr.err)
	}
	p := pr.peer
	if s.cfg.Authorize != nil {
		if s.cfg.Authorize(p) {
			return p, nil
		}
	} else if p.UID == 0 || p.UID == *s.cfg.AgentUID {
		return p, nil
	} else if s.cfg.AdminGroup != "" {
		ok, err := platform.UserInGroup(p.UID, s.cfg.AdminGroup)
		if err != nil {
			s.cfg.Logger.Warn("check admin group", "uid", p.UID, "group", s.cfg.AdminGroup, "err", err)
		}
		if ok {
			return p, nil
		}
	}
	return p, fmt.Errorf("%w: uid %d is not root, the agent's user or a member of the admin group %q; run the command with sudo", ErrForbidden, p.UID, s.cfg.AdminGroup)
}
