package apple

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// dueChunk is how many due devices the coverage phase asks the sink for at
// a time; the sink orders them, so a smaller chunk follows its order closer.
const dueChunk = 200

// coverage reads the coverage of every device the sink says is due, in its
// order, until none is.
func (r *run) coverage(ctx context.Context) error {
	last := ""
	for {
		due, err := r.sink.Due(ctx, dueChunk)
		if err != nil {
			return fmt.Errorf("list devices due a coverage read: %w", err)
		}
		if len(due) == 0 {
			return nil
		}
		if due[0].ID == last {
			return fmt.Errorf("store coverage: device %s is still due after its read was stored", last)
		}
		last = due[0].ID
		if err := r.readChunk(ctx, due); err != nil {
			return err
		}
	}
}

// batch collects coverage reads and stores them every BatchSize reads or
// BatchInterval, whichever comes first.
type batch struct {
	r       *run
	mu      sync.Mutex // held while storing, so batches go in order
	pending []DeviceCoverage
	started time.Time
}

func (bt *batch) add(ctx context.Context, dc DeviceCoverage) error {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if len(bt.pending) == 0 {
		bt.started = bt.r.c.now()
	}
	bt.pending = append(bt.pending, dc)
	size := orDefault(bt.r.c.BatchSize, DefaultBatchSize)
	every := orDefault(bt.r.c.BatchInterval, DefaultBatchInterval)
	if len(bt.pending) < size && bt.r.c.now().Sub(bt.started) < every {
		return nil
	}
	return bt.flushLocked(ctx)
}

func (bt *batch) flush(ctx context.Context) error {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return bt.flushLocked(ctx)
}

func (bt *batch) flushLocked(ctx context.Context) error {
	if len(bt.pending) == 0 {
		return nil
	}
	if err := bt.r.sink.Coverage(ctx, bt.pending); err != nil {
		return fmt.Errorf("store coverage: %w", err)
	}
	for _, dc := range bt.pending {
		bt.r.p.Checked++
		bt.r.p.Coverage += len(dc.Records)
		if dc.Failed {
			bt.r.p.Failed++
		}
	}
	bt.pending = bt.pending[:0]
	bt.r.progress()
	return nil
}

// readChunk reads the coverage of devices with as many requests in flight
// as the budget allows. When one read fails for good no new read starts,
// but the reads in flight finish and are stored with the others: what Apple
// answered is never thrown away.
func (r *run) readChunk(ctx context.Context, devices []Device) error {
	bt := &batch{r: r}
	var g errgroup.Group
	g.SetLimit(r.b.workers())
	var stop atomic.Bool
	for _, d := range devices {
		if stop.Load() || ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if stop.Load() {
				return nil
			}
			dc, err := r.c.deviceCoverage(ctx, r.cred, r.b, r.base, d)
			if err != nil {
				if !skippable(err) {
					stop.Store(true)
					return err
				}
				dc = DeviceCoverage{DeviceID: d.ID, Serial: d.Serial, Failed: true, Reason: err.Error()}
			}
			if err := bt.add(ctx, dc); err != nil {
				stop.Store(true)
				return err
			}
			return nil
		})
	}
	err := g.Wait()
	// What was read is stored whatever stopped the chunk.
	if ferr := bt.flush(context.WithoutCancel(ctx)); ferr != nil && err == nil {
		err = ferr
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}

// skippable says a coverage failure concerns only that device: a client
// error other than 401, 403 and 429 (e.g. 404, the device left the
// organisation).
func skippable(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		return false
	}
	return se.Status >= 400 && se.Status < 500
}
