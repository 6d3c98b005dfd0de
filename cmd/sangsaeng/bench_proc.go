package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchChild is a child process of the bench: a node or a baseline host.
type benchChild struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	errs  *tailBuffer
	hello benchMsg

	wmu     sync.Mutex // writes to stdin
	mu      sync.Mutex
	next    int
	pending map[int]chan benchMsg
	done    chan struct{} // closed when the process has exited
	exitErr error

	peakKB     atomic.Int64 // largest resident size seen (VmHWM), in KiB
	peakAnonKB atomic.Int64 // largest anonymous resident size seen (RssAnon), in KiB
}

// errChildGone is returned for a request to a child that has exited.
var errChildGone = errors.New("the process exited")

// startBenchChild starts exe with args and waits for its hello.
func startBenchChild(ctx context.Context, name, exe string, args ...string) (*benchChild, error) {
	c := &benchChild{
		name: name, errs: &tailBuffer{max: 64 << 10},
		pending: map[int]chan benchMsg{}, done: make(chan struct{}),
	}
	c.cmd = exec.Command(exe, args...)
	c.cmd.Stderr = c.errs
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	hello := make(chan benchMsg, 1)
	go c.read(out, hello)
	go c.sample()
	select {
	case c.hello = <-hello:
		return c, nil
	case <-c.done:
		return nil, c.gone()
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	case <-time.After(time.Minute):
		c.kill()
		return nil, fmt.Errorf("%s did not start within a minute%s", name, c.tail())
	}
}

// read delivers the child's lines: the hello, then the replies.
func (c *benchChild) read(out io.Reader, hello chan<- benchMsg) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	first := true
	for sc.Scan() {
		var m benchMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			fmt.Fprintf(c.errs, "bench: unreadable line from the child: %q\n", sc.Bytes())
			continue
		}
		if first {
			first = false
			hello <- m
			continue
		}
		c.mu.Lock()
		r := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if r != nil {
			r <- m
		}
	}
	_, _ = io.Copy(io.Discard, out)
	c.exitErr = c.cmd.Wait()
	close(c.done)
}

// sample keeps the child's peak resident size, from /proc, every 100 ms.
func (c *benchChild) sample() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		c.sampleOnce()
		select {
		case <-c.done:
			return
		case <-t.C:
		}
	}
}

// sampleOnce reads the child's memory once.
func (c *benchChild) sampleOnce() {
	peak, anon := rssKB(c.cmd.Process.Pid)
	raise(&c.peakKB, peak)
	raise(&c.peakAnonKB, anon)
}

// raise sets v to n when n is larger.
func raise(v *atomic.Int64, n int64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// rssKB returns, from /proc/PID/status, the peak resident size of a process
// (VmHWM, else VmRSS) and its anonymous resident size now (RssAnon: memory
// that is not a mapped file, such as Badger's tables), in KiB; zeros where
// there is no /proc.
func rssKB(pid int) (peak, anon int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	var hwm, rss int64
	for line := range strings.SplitSeq(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch key {
		case "VmHWM":
			hwm = n
		case "VmRSS":
			rss = n
		case "RssAnon":
			anon = n
		}
	}
	return max(hwm, rss), anon
}

// cpuTime returns the CPU time the child has used so far, from
// /proc/PID/stat, and false where there is no /proc.
func (c *benchChild) cpuTime() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces; fields after it
	// are numbered from 3 (state): utime is 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const clockTicks = 100 // USER_HZ, 100 on every Linux platform Go supports
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// call sends a request and waits for its reply.
func (c *benchChild) call(ctx context.Context, m benchMsg) (benchMsg, error) {
	r := make(chan benchMsg, 1)
	c.mu.Lock()
	c.next++
	m.ID = c.next
	c.pending[m.ID] = r
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
	}()
	line, err := json.Marshal(m)
	if err != nil {
		return benchMsg{}, err
	}
	c.wmu.Lock()
	_, err = c.stdin.Write(append(line, '\n'))
	c.wmu.Unlock()
	if err != nil {
		select {
		case <-c.done:
			return benchMsg{}, c.gone()
		default:
			return benchMsg{}, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	select {
	case resp := <-r:
		if resp.Error != "" {
			return resp, fmt.Errorf("%s: %s: %s", c.name, m.Op, resp.Error)
		}
		return resp, nil
	case <-c.done:
		return benchMsg{}, c.gone()
	case <-ctx.Done():
		return benchMsg{}, ctx.Err()
	}
}

// stop asks the child to exit, closes its stdin, and kills it when it has
// not exited after a while.
func (c *benchChild) stop() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	c.sampleOnce()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.call(ctx, benchMsg{Op: "exit"})
	c.wmu.Lock()
	c.stdin.Close()
	c.wmu.Unlock()
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.kill()
		return fmt.Errorf("%s did not exit; killed it", c.name)
	}
	if errors.Is(err, errChildGone) {
		err = nil
	}
	return err
}

// kill ends the child at once.
func (c *benchChild) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// gone is the error for a child that exited, with the end of its stderr.
func (c *benchChild) gone() error {
	<-c.done
	return fmt.Errorf("%s: %w (%v)%s", c.name, errChildGone, c.exitErr, c.tail())
}

// tail returns the end of the child's stderr, for error messages.
func (c *benchChild) tail() string {
	s := strings.TrimSpace(c.errs.String())
	if s == "" {
		return ""
	}
	return "; its last output:\n" + s
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

// Write keeps the end of what was written; it never fails.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if extra := t.b.Len() - t.max; extra > 0 {
		t.b.Next(extra)
	}
	return len(p), nil
}

// String returns what the buffer holds.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
