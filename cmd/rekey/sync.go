package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/rekeyd/rekey/store"
)

func runSync(ctx context.Context, env *Env, args []string) error {
	tc, err := openTenantCall(ctx, env, "sync", "print the sync's events as JSON lines", args)
	if err != nil {
		return err
	}
	defer tc.client.Close()
	c, id, arg, asJSON := tc.client, tc.id, tc.arg, tc.json
	// Follow first, so that no event of this sync is missed.
	stream, err := c.Events(ctx)
	if err != nil {
		return err
	}
	defer stream.Close()
	if _, err := c.Sync(ctx, id); err != nil {
		return fmt.Errorf("start sync of %s: %w", arg, err)
	}
	_, tty := terminal(env.Stderr)
	p := &syncProgress{env: env, tty: tty && !asJSON}
	started := false
	for {
		e, err := stream.Next()
		switch {
		case ctx.Err() != nil:
			p.clear()
			return fmt.Errorf("stopped following; the sync of %s goes on in the agent", arg)
		case errors.Is(err, io.EOF):
			return errors.New("the agent closed the event stream before the sync ended")
		case err != nil:
			return fmt.Errorf("follow sync: %w", err)
		}
		if e.TenantID != id {
			continue
		}
		// An end seen before this sync started belongs to an earlier sync.
		if e.Kind == store.EvSyncStarted {
			started = true
		}
		if !started {
			continue
		}
		if asJSON && isSyncEvent(e.Kind) {
			fmt.Fprintf(env.Stdout, "%s\n", stream.Line())
		}
		switch e.Kind {
		case store.EvSyncProgress:
			p.show(e)
		case store.EvSyncFinished:
			p.clear()
			if !asJSON {
				fmt.Fprintf(env.Stdout, "Synced %s: %s devices, %s coverage records.\n", arg, field(e, "devices"), field(e, "coverage"))
			}
			return nil
		case store.EvSyncFailed:
			p.clear()
			return fmt.Errorf("sync of %s failed: %s (what it stored is kept; the next sync resumes)", arg, e.Message)
		case store.EvSyncPaused:
			p.clear()
			return fmt.Errorf("sync of %s paused until %s at Apple's request; it resumes then: %s", arg, field(e, "until"), e.Message)
		}
	}
}

func isSyncEvent(kind store.EventKind) bool {
	switch kind {
	case store.EvSyncStarted, store.EvSyncProgress, store.EvSyncFinished, store.EvSyncFailed,
		store.EvSyncRestarted, store.EvSyncPaused:
		return true
	}
	return false
}

func field(e store.Event, k string) string {
	if v, ok := e.Fields[k]; ok {
		return v
	}
	return "?"
}

// syncProgress keeps one updating line on a terminal.
type syncProgress struct {
	env   *Env
	tty   bool
	shown bool
}

func (p *syncProgress) show(e store.Event) {
	if !p.tty {
		return
	}
	fmt.Fprintf(p.env.Stderr, "\r\033[Ksyncing: %s devices listed, coverage of %s read", field(e, "devices"), field(e, "checked"))
	p.shown = true
}

func (p *syncProgress) clear() {
	if p.shown {
		fmt.Fprint(p.env.Stderr, "\r\033[K")
		p.shown = false
	}
}
