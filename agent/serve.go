package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/rekeyd/rekey/agent/api"
)

// shutdownGrace bounds how long open API requests get at shutdown.
const shutdownGrace = 5 * time.Second

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
	srv := api.New(api.Config{Backend: a, Version: a.cfg.Version, AgentUID: &uid,
		AdminGroup: a.cfg.AdminGroup, Logger: a.log})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil {
			a.log.Error("local API stopped", "err", err)
		}
	}()
	a.log.Info("local API listening", "socket", a.cfg.Socket)
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			a.log.Warn("local API shutdown", "err", err)
		}
		<-done
	}, nil
}
