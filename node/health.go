package node

import (
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sangsaeng/sangsaeng/store"
)

// Store operations whose failures are counted, the values of the op label
// of sangsaeng_store_errors_total.
const (
	opGossip  = "gossip"  // storing a record received over gossip
	opSync    = "sync"    // storing records received by sync, or reading the heads for it
	opJoin    = "join"    // storing a channel's governance chain on join
	opFetch   = "fetch"   // storing a record fetched from a partner
	opPublish = "publish" // storing the node's own records
	opMeta    = "meta"    // the node's settings: the address book
)

var storeOps = []string{opGossip, opSync, opJoin, opFetch, opPublish, opMeta}

// Health bounds.
const (
	recentErrors    = 32               // store errors kept for GET /v1/status
	maxErrorMessage = 512              // bytes of an error's message kept
	logEvery        = time.Minute      // at most one log line per cause in this time
	unhealthyFor    = 10 * time.Minute // a store error makes the node unhealthy this long
)

// storeFailure is a store operation that failed: the record is not held.
type storeFailure struct {
	op  string
	err error
}

func (e *storeFailure) Error() string { return "store failed (" + e.op + "): " + e.err.Error() }
func (e *storeFailure) Unwrap() error { return e.err }

func isStoreFailure(err error) bool {
	var sf *storeFailure
	return errors.As(err, &sf)
}

// storeError is one entry of the ring of recent store errors.
type storeError struct {
	at      time.Time
	op, msg string
}

type causeKey struct{ op, cause string }

type causeLog struct {
	last       time.Time // when a line was last logged
	suppressed int       // failures since, not logged
	timer      bool      // a summary is scheduled
}

// health keeps the node's recent store errors, bounded, and rate-limits
// their logging.
type health struct {
	mu     sync.Mutex
	start  time.Time
	every  time.Duration // logEvery, or a test's
	ring   [recentErrors]storeError
	next   int
	count  int
	total  uint64 // failures since start
	causes map[causeKey]*causeLog
}

// storeFailed counts err as a failure of the store in op, keeps it in the
// ring of recent errors, logs it (the first failure of each cause, then a
// count at most once every logEvery) and returns it as a *storeFailure.
// Errors that are not failures of the storage are returned as they are,
// uncounted: the node shutting down, and a record the store refuses as
// invalid (that is the record's fault, and a partner must not be able to
// make the node look unhealthy).
func (n *Node) storeFailed(op string, err error) error {
	if err == nil || isStoreFailure(err) {
		return err
	}
	if errors.Is(err, errClosed) || errors.Is(err, store.ErrInvalid) ||
		(n.ctx.Err() != nil && errors.Is(err, store.ErrClosed)) {
		return err
	}
	n.metrics.storeErrors.WithLabelValues(op).Inc()
	msg := err.Error()
	if len(msg) > maxErrorMessage {
		msg = strings.ToValidUTF8(msg[:maxErrorMessage], "") // not a cut rune
	}
	now := time.Now()
	h := &n.health
	h.mu.Lock()
	h.ring[h.next] = storeError{at: now, op: op, msg: msg}
	h.next = (h.next + 1) % recentErrors
	h.count = min(h.count+1, recentErrors)
	h.total++
	k := causeKey{op, causeOf(err)}
	if h.causes == nil {
		h.causes = map[causeKey]*causeLog{}
	}
	every := h.every
	if every == 0 {
		every = logEvery
	}
	c := h.causes[k]
	if c == nil {
		c = &causeLog{}
		h.causes[k] = c
	}
	logNow := c.last.IsZero() || now.Sub(c.last) >= every
	if logNow {
		c.last = now
	} else {
		c.suppressed++
		if !c.timer {
			c.timer = true
			time.AfterFunc(every-now.Sub(c.last), func() { n.logSuppressed(k) })
		}
	}
	h.mu.Unlock()
	if logNow {
		n.log.Error("store failed; records are not held until it works again (see `sangsaeng status`); further failures of this cause are counted, not logged, for "+every.String(),
			"op", op, "cause", k.cause, "err", msg)
	}
	return &storeFailure{op: op, err: err}
}

// logSuppressed logs how many failures of cause k went unlogged.
func (n *Node) logSuppressed(k causeKey) {
	h := &n.health
	h.mu.Lock()
	c := h.causes[k]
	c.timer = false
	k2 := c.suppressed
	c.suppressed = 0
	if k2 > 0 {
		c.last = time.Now()
	}
	h.mu.Unlock()
	if k2 > 0 {
		n.log.Error("store failures continue", "op", k.op, "cause", k.cause, "since_last_log", k2)
	}
}

// causeOf names the kind of a store failure, for the rate limit of its log.
func causeOf(err error) string {
	switch {
	case errors.Is(err, store.ErrClosed):
		return "closed"
	case errors.Is(err, store.ErrCorrupt):
		return "corrupt"
	case errors.Is(err, syscall.ENOSPC):
		return "disk_full"
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EROFS):
		return "permission"
	case errors.Is(err, syscall.EIO):
		return "io"
	}
	return "other"
}

// recent returns the recent store errors, newest first.
func (h *health) recent() []storeError {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]storeError, 0, h.count)
	for i := 1; i <= h.count; i++ {
		out = append(out, h.ring[(h.next-i+recentErrors)%recentErrors])
	}
	return out
}
