package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/rekeyd/rekey/agent/api"
	"github.com/rekeyd/rekey/platform"
)

// shutdownGrace bounds how long open API requests get at shutdown.
const shutdownGrace = 5 * time.Second

// fdReserve is the number of file descriptors kept out of the local API's
// reach for the agent's own work: SQLite's connections (database, WAL and
// shared memory each), the watcher and its folders, payload, passphrase and
// status-file reads and writes, connections to Apple and the listener.
const fdReserve = 128

// connBudget is how many API connections an open-file limit of soft leaves
// room for once fdReserve is kept.
func connBudget(soft int) int {
	return min(max(soft-fdReserve, 8), 4*api.DefaultMaxConns)
}

// serveAPI starts the local API on the configured socket and returns the
// function that shuts it down. Without a socket it serves nothing.
func (a *Agent) serveAPI(ctx context.Context) (stop func(), err error) {
	if a.cfg.Socket == "" {
		return func() {}, nil
	}
	l, err := api.Listen(a.cfg.Socket)
	if err != nil {
		return nil, fmt.Errorf("local API: %w", err)
	}
	uid := euid()
	maxConns := api.DefaultMaxConns
	if soft, err := platform.RaiseFileLimit(); err == nil {
		maxConns = connBudget(soft)
	} else {
		a.log.Warn("open-file limit unknown; API connections capped at the default", "max_conns", maxConns, "err", err)
	}
	lim := api.NewLimiter()
	lim.Clock, lim.Store = a.cfg.Clock, a.st // counts survive a restart
	srv := api.New(api.Config{Backend: a, Version: a.cfg.Version, AgentUID: &uid,
		AdminGroup: a.cfg.AdminGroup, Limiter: lim, MaxConns: maxConns, Logger: a.log})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil {
			a.log.Error("local API stopped", "err", err)
		}
	}()
	a.log.Info("local API listening", "socket", a.cfg.Socket, "max_conns", maxConns)
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			a.log.Warn("local API shutdown", "err", err)
		}
		<-done
	}, nil
}
