package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// WatchOptions says what Watch follows.
type WatchOptions struct {
	// Channel limits the stream to one channel (ID or name); empty is
	// every channel.
	Channel string
	// Since is the event id after which the stream starts, as the stream
	// gave it (EPOCH-N): "0" replays every record the node holds, and
	// "" starts with the next record.
	Since string
	// Retrying, when set, is told each time the stream broke and is about
	// to be resumed after wait, with the error that broke it.
	Retrying func(err error, wait time.Duration)
}

// A record's JSON is at most a few times its envelope, and envelopes at
// most 256 KiB.
const maxEventLine = 4 << 20

// maxEventID bounds an event id (16 hex digits, a dash, 20 digits).
const maxEventID = 64

// Watch follows the node's event stream and calls fn with each record and
// its event id (EPOCH-N, N the node's arrival number for it), in the order
// the node stored them. When the stream breaks (the daemon restarts, the
// network drops), Watch waits and resumes after the last id it saw, so fn
// sees every record once, in order, with nothing missing. It returns nil
// when ctx ends, fn's error, the error of a request the daemon refuses (a
// bad token, an unknown channel, an id from before the node's store was
// restored or rebuilt), or the error the daemon ended the stream with.
func (c *Client) Watch(ctx context.Context, o WatchOptions, fn func(id string, r Record) error) error {
	last := o.Since
	wait := 250 * time.Millisecond
	for connected := false; ; {
		got, err := c.watchOnce(ctx, o.Channel, last, func(id string, r *Record) error {
			last = id
			if r == nil {
				return nil
			}
			return fn(id, *r)
		})
		if ctx.Err() != nil {
			return nil
		}
		var fnErr callbackError
		var apiErr *Error
		var fatal streamError
		switch {
		case errors.As(err, &fnErr):
			return fnErr.err
		case errors.As(err, &fatal):
			return err
		case errors.As(err, &apiErr) && apiErr.Status/100 == 4:
			return err
		case errors.Is(err, ErrNoDaemon) && !connected && !got:
			return err // nothing to resume: say how to start it
		case err == nil:
			err = errors.New("the daemon closed the stream")
		}
		if got {
			connected, wait = true, 250*time.Millisecond
		}
		if o.Retrying != nil {
			o.Retrying(err, wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// callbackError carries an error of Watch's fn out of watchOnce.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// streamError is a stream that reconnecting would not mend: the daemon
// ended it with an error, or sent what this client cannot read.
type streamError struct{ msg string }

func (e streamError) Error() string { return e.msg }

func streamErrorf(format string, args ...any) error {
	return streamError{fmt.Sprintf(format, args...)}
}

// watchOnce reads one connection's worth of the stream. got says whether
// the daemon answered.
func (c *Client) watchOnce(ctx context.Context, channel, after string, fn func(string, *Record) error) (got bool, err error) {
	q := url.Values{}
	if channel != "" {
		q.Set("channel", channel)
	}
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	if after != "" {
		req.Header.Set("Last-Event-ID", after)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return false, readError(resp, http.MethodGet, path)
	}
	got = true
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	var (
		id      string
		haveID  bool
		event   string
		data    strings.Builder
		hasData bool
	)
	for sc.Scan() {
		line := sc.Text()
		if line == "" { // the end of an event
			if haveID && !hasData {
				// Records of other channels only: the place moves on.
				if err := fn(id, nil); err != nil {
					return got, callbackError{err}
				}
			}
			if hasData {
				switch event {
				case "", "record":
					var r Record
					if err := json.Unmarshal([]byte(data.String()), &r); err != nil {
						return got, streamErrorf("watch: event %s is not a record: %v", id, err)
					}
					if !haveID {
						return got, streamErrorf("watch: the daemon sent an event without an id (is it older than this client?)")
					}
					if err := fn(id, &r); err != nil {
						return got, callbackError{err}
					}
				case "error":
					var e Error
					_ = json.Unmarshal([]byte(data.String()), &e)
					return got, streamErrorf("watch: the daemon ended the stream: %s", e.Message)
				}
			}
			haveID, event, hasData = false, "", false
			data.Reset()
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			if len(value) > maxEventID {
				return got, streamErrorf("watch: the daemon sent an event id of %d bytes", len(value))
			}
			id, haveID = value, true
		case "event":
			event = value
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			if data.Len()+len(value) > maxEventLine {
				return got, streamErrorf("watch: event %s is over %d bytes", id, maxEventLine)
			}
			data.WriteString(value)
			hasData = true
		}
	}
	if err := sc.Err(); err != nil {
		return got, fmt.Errorf("watch: %w", err)
	}
	return got, nil
}
