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

// retry runs attempt up to MaxTries times. attempt returns the HTTP status
// (0 when there was no answer) and headers. A 429 waits for Retry-After
// (capped at MaxRetryAfter, plus up to 10% jitter); a 5xx or a transport
// error backs off exponentially from BackoffBase; anything else is final.
func (c *Client) retry(ctx context.Context, op string, attempt func() (int, http.Header, error)) error {
	tries := orDefault(c.MaxTries, DefaultMaxTries)
	var err error
	for i := range tries {
		var status int
		var hdr http.Header
		status, hdr, err = attempt()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		var ne *netError
		var wait time.Duration
		switch {
		case status == http.StatusTooManyRequests:
			wait = c.retryAfter(hdr, i)
		case status >= 500 || errors.As(err, &ne):
			wait = c.backoff(i)
		default:
			return err
		}
		if i == tries-1 {
			break
		}
		if serr := c.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s: wait %s to retry: %w", op, wait, serr)
		}
	}
	return fmt.Errorf("gave up after %d tries: %w", tries, err)
}

// retryAfter reads Retry-After as seconds or an HTTP date, caps it, and
// adds up to 10% jitter; it never waits less than Apple asked (below the cap).
// Without a usable header it backs off as for a 5xx.
func (c *Client) retryAfter(hdr http.Header, try int) time.Duration {
	v := hdr.Get("Retry-After")
	var wait time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
		wait = time.Duration(min(secs, 1<<31)) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		wait = max(at.Sub(c.now()), 0)
	} else {
		return c.backoff(try)
	}
	wait = min(wait, orDefault(c.MaxRetryAfter, DefaultMaxRetryAfter))
	return wait + c.jitter(wait/10)
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

// get reads one API resource into v with the bearer token for cred. A 401
// drops the cached token and tries once more with a fresh one.
func (c *Client) get(ctx context.Context, cred Credential, rawURL, op string, v any) error {
	refreshed := false
	for {
		tok, err := c.bearer(ctx, cred)
		if err != nil {
			return err
		}
		err = c.retry(ctx, op, func() (int, http.Header, error) {
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
