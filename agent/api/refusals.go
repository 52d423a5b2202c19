package api

import (
	"log/slog"
	"sort"
	"sync"
	"time"
)

// refusals counts refused requests per uid and logs one summary line per uid
// per period, so that a local user sending refused requests in a loop cannot
// grow the log by more than a line a minute.
type refusals struct {
	log *slog.Logger

	mu     sync.Mutex
	counts map[int]*refusalCount
}

type refusalCount struct {
	n            int
	pid          int    // the last refused caller's pid
	method, path string // the last refused request
}

// add counts one refused request of uid (-1 when the caller is unknown).
func (r *refusals) add(uid, pid int, method, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.counts == nil {
		r.counts = make(map[int]*refusalCount)
	}
	c := r.counts[uid]
	if c == nil {
		c = &refusalCount{}
		r.counts[uid] = c
	}
	c.n++
	c.pid, c.method, c.path = pid, method, path
}

// flush logs one line per uid counted since the last flush, and forgets them.
func (r *refusals) flush(period time.Duration) {
	r.mu.Lock()
	counts := r.counts
	r.counts = nil
	r.mu.Unlock()
	uids := make([]int, 0, len(counts))
	for uid := range counts {
		uids = append(uids, uid)
	}
	sort.Ints(uids)
	for _, uid := range uids {
		c := counts[uid]
		r.log.Info("refused API requests", "uid", uid, "count", c.n, "period", period.String(),
			"last_method", c.method, "last_path", c.path, "last_pid", c.pid)
	}
}

// run flushes every period until stop is closed; Shutdown flushes what is
// left after closing it.
func (r *refusals) run(period time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush(period)
		case <-stop:
			return
		}
	}
}
