package api

import (
	"context"
	"net/http"

	"github.com/rekeyd/rekey/store"
)

// A device page of 1,000 devices is over half a megabyte of JSON. A backend
// that is a DeviceStreamer hands it over in batches as it reads them; the
// server encodes each batch on the request's goroutine while the backend
// reads the next on another, and sends the encoded bytes once a flush's
// worth has gathered, so that reading, encoding and sending overlap on a
// machine with more than one core.
//
// An answer of less than flushBytes goes out whole, with Content-Length; a
// longer one is sent chunked as it is encoded. An error before the first
// bytes are sent (an unknown tenant: 404) is answered as usual; an error
// after it (the backend failing mid-page, which a healthy store does not)
// closes the connection without the chunked body's end, so that a client
// sees a broken answer, never a short page that looks whole.

// flushBytes is how much encoded page gathers before it is sent.
const flushBytes = 64 << 10

// DeviceStreamer is an optional Backend capability: Devices in batches, in
// serial order, each batch emit's to keep. It returns the next cursor, and
// an error of emit when emit fails. The devices' and records' Attrs must be
// valid, compact JSON, as the store keeps them: the server sends them as
// they are.
type DeviceStreamer interface {
	StreamDevices(ctx context.Context, tenantID string, q store.DeviceQuery, emit func([]store.Device) error) (string, error)
}

// streamOf is b's DeviceStreamer, whose devices' attributes are trusted
// (appendRaw), or its Devices as one batch, whose are not.
func streamOf(b Backend) (func(context.Context, string, store.DeviceQuery, func([]store.Device) error) (string, error), bool) {
	if ds, ok := b.(DeviceStreamer); ok {
		return ds.StreamDevices, true
	}
	return func(ctx context.Context, id string, q store.DeviceQuery, emit func([]store.Device) error) (string, error) {
		devs, next, err := b.Devices(ctx, id, q)
		if err != nil {
			return "", err
		}
		if len(devs) > 0 {
			if err := emit(devs); err != nil {
				return "", err
			}
		}
		return next, nil
	}, false
}

// pageRead is the end of a backend's read: its next cursor or its error.
type pageRead struct {
	next string
	err  error
}

// streamDevices answers one device page of tenant id.
func streamDevices(w http.ResponseWriter, r *http.Request, backend Backend, id string, q store.DeviceQuery) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	batches := make(chan []store.Device, 4)
	end := make(chan pageRead, 1)
	read, trusted := streamOf(backend)
	go func() {
		next, err := read(ctx, id, q, func(batch []store.Device) error {
			select {
			case batches <- batch:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(batches)
		end <- pageRead{next, err}
	}()

	buf := pageBuffers.Get().(*[]byte)
	defer func() {
		if cap(*buf) <= maxPooledPage {
			pageBuffers.Put(buf)
		}
	}()
	b := append((*buf)[:0], pageHead...)
	sent, n := false, 0
	var err error
	for batch := range batches {
		if err != nil {
			continue // drain: the reader ends once it sees ctx cancelled
		}
		if b, err = appendDevices(b, batch, n, trusted); err != nil {
			cancel()
			continue
		}
		n += len(batch)
		if len(b) >= flushBytes {
			if !sent {
				h := w.Header()
				h["Content-Type"] = jsonType
				h["Cache-Control"] = noStore
				w.WriteHeader(http.StatusOK)
				sent = true
			}
			w.Write(b)
			b = b[:0]
		}
	}
	*buf = b[:0]
	res := <-end
	if err == nil {
		err = res.err
	}
	switch {
	case err != nil && !sent:
		writeError(w, err)
	case err != nil:
		panic(http.ErrAbortHandler) // net/http closes the connection unfinished
	case !sent:
		b = appendPageTail(b, res.next)
		*buf = b[:0]
		writeBody(w, http.StatusOK, b)
	default:
		b = appendPageTail(b, res.next)
		*buf = b[:0]
		w.Write(b)
	}
}
