package apple

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxAPIBody caps what is read from one API answer (a page of 1000 devices
// is about 1 MiB).
const maxAPIBody = 32 << 20

// netError is a transport failure: no HTTP answer at all. It is retried.
type netError struct {
	op  string
	err error
}

func (e *netError) Error() string   { return fmt.Sprintf("%s: %v", e.op, e.err) }
func (e *netError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// ErrPaused: Apple asked for a wait longer than a sync waits (more than
// MaxRetryAfter). The sync stopped with its progress kept; a PausedError
// says when it may resume.
var ErrPaused = errors.New("apple asked for a longer wait than a sync waits")

// PausedError is a Retry-After longer than the client waits.
type PausedError struct {
	Op    string
	Until time.Time
	err   error // the 429 answer
}

func (e *PausedError) Error() string {
	msg := fmt.Sprintf("apple asked to wait until %s; the sync resumes then", e.Until.UTC().Format(time.RFC3339))
	if e.Op != "" {
		msg = e.Op + ": " + msg
	}
	if e.err != ErrUnreachable {
		msg += ": " + e.err.Error()
	}
	return msg
}

// Unwrap gives ErrPaused, ErrUnreachable and the answer's error.
func (e *PausedError) Unwrap() []error { return []error{ErrPaused, ErrUnreachable, e.err} }

// maxThrottled is how many 429 answers one request paid from a budget
// takes before it gives up; an unpaced one (an auth check) takes MaxTries.
const maxThrottled = 20

// spend waits until the budget lets one request go (nil: no budget). A
// budget paused for longer than MaxRetryAfter (another request was told to
// wait that long) stops with a PausedError at once.
func (c *Client) spend(ctx context.Context, b *Budget) error {
	if b == nil {
		return nil
	}
	for {
		now := c.now()
		wait, taken := b.reserve(now)
		if !taken && wait > orDefault(c.MaxRetryAfter, DefaultMaxRetryAfter) {
			return &PausedError{Until: now.Add(wait), err: ErrUnreachable}
		}
		if wait > 0 {
			if err := c.sleep(ctx, wait); err != nil {
				return err
			}
		}
		if taken {
			return nil
		}
	}
}

// retry runs attempt, each try paid from the budget b (nil: unpaced).
// attempt returns the HTTP status (0 when there was no answer) and headers.
// A 429 waits the full Retry-After (seconds or an HTTP date; without one it
// backs off as for a 5xx), pausing every request of the budget and lowering
// its rate; a Retry-After longer than MaxRetryAfter stops with a
// PausedError. A 5xx or a transport error backs off exponentially from
// BackoffBase, at most MaxTries times. Anything else is final.
func (c *Client) retry(ctx context.Context, b *Budget, op string, attempt func() (int, http.Header, error)) error {
	tries, throttled := 0, 0
	for {
		if err := c.spend(ctx, b); err != nil {
			return fmt.Errorf("%s: wait for the request budget: %w", op, err)
		}
		status, hdr, err := attempt()
		var ne *netError
		transient := status == http.StatusTooManyRequests || status >= 500 || errors.As(err, &ne)
		if b != nil && !transient {
			b.succeeded(c.now())
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !transient {
			return err
		}
		var wait time.Duration
		if status == http.StatusTooManyRequests {
			throttled++
			wait = c.retryAfter(hdr, throttled-1)
			if limit := orDefault(c.MaxRetryAfter, DefaultMaxRetryAfter); wait > limit {
				if b != nil {
					b.throttle(c.now(), wait) // the budget's other requests stop too
				}
				return &PausedError{Op: op, Until: c.now().Add(wait), err: err}
			}
			if throttled >= maxThrottled || (b == nil && throttled >= orDefault(c.MaxTries, DefaultMaxTries)) {
				return fmt.Errorf("gave up after %d answers 429: %w", throttled, err)
			}
			if b != nil {
				b.throttle(c.now(), wait)
				continue // spend waits out the pause
			}
		} else {
			tries++
			if tries >= orDefault(c.MaxTries, DefaultMaxTries) {
				return fmt.Errorf("gave up after %d tries: %w", tries, err)
			}
			wait = c.backoff(tries - 1)
		}
		if serr := c.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s: wait %s to retry: %w", op, wait, serr)
		}
	}
}

// retryAfter reads Retry-After as seconds or an HTTP date: the full wait
// Apple asked for. Without a usable header it backs off as for a 5xx.
func (c *Client) retryAfter(hdr http.Header, try int) time.Duration {
	v := hdr.Get("Retry-After")
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
		return time.Duration(min(secs, 1<<31)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(c.now()), 0)
	}
	return c.backoff(try)
}

// backoff is BackoffBase·2^try capped at BackoffMax, jittered in its upper half.
func (c *Client) backoff(try int) time.Duration {
	base := orDefault(c.BackoffBase, DefaultBackoffBase)
	top := orDefault(c.BackoffMax, DefaultBackoffMax)
	d := top
	if try < 30 && base<<try < top {
		d = base << try
	}
	return d/2 + c.jitter(d/2)
}

// get reads one API resource into v with the bearer token for cred, paid
// from the budget b. A 401
// drops the cached token and tries once more with a fresh one.
func (c *Client) get(ctx context.Context, cred Credential, b *Budget, rawURL, op string, v any) error {
	refreshed := false
	for {
		tok, err := c.bearer(ctx, cred, b)
		if err != nil {
			return err
		}
		err = c.retry(ctx, b, op, func() (int, http.Header, error) {
			return c.getOnce(ctx, tok, rawURL, op, v)
		})
		var se *StatusError
		if err != nil && !refreshed && errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			refreshed = true
			c.invalidate(cred, tok)
			continue
		}
		if err != nil && refreshed && errors.As(err, &se) && se.Status == http.StatusUnauthorized {
			return fmt.Errorf("the API refused a fresh token too: %w", err)
		}
		return err
	}
}

func (c *Client) getOnce(ctx context.Context, tok, rawURL, op string, v any) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: build request: check APIBaseURL: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, nil, &netError{op: op, err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return 0, nil, &netError{op: op + ": read answer", err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, resp.Header, apiStatusError(op, resp.StatusCode, body)
	}
	if err := decodeJSON(body, v); err != nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s: %w", op, err)
	}
	return resp.StatusCode, resp.Header, nil
}

// apiStatusError classifies a non-200 API answer: 401 and 403 say the
// credential may not do this (rejected), 429 and 5xx are no verdict, other
// 4xx are about the request (e.g. a device that is gone) and wrap neither.
func apiStatusError(op string, status int, body []byte) error {
	e := &StatusError{Op: op, Status: status}
	var ae apiErrors
	if jsonObject(body, &ae) && len(ae.Errors) > 0 {
		e.ID = clean(ae.Errors[0].ID)
		e.Code = clean(ae.Errors[0].Code)
		e.Detail = clean(ae.Errors[0].Detail)
		if e.Detail == "" {
			e.Detail = clean(ae.Errors[0].Title)
		}
	}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.kind = ErrRejected
	case status == http.StatusTooManyRequests || status >= 500:
		e.kind = ErrUnreachable
	}
	return e
}
