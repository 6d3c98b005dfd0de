package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// benchBaselineChild is `sangsaeng bench baseline-child`: a bare libp2p host
// on loopback TCP with Noise and yamux, the node's transport, running
// go-libp2p-pubsub's gossipsub with its default settings (messages signed
// by their author, queues of 32, flood publishing), driven by the bench
// over stdin and stdout. It is not meant to be run by hand.
func benchBaselineChild(ctx context.Context, env *Env, args []string) error {
	f := env.flags("bench "+benchBaselineWord,
		"A bare gossipsub process of `sangsaeng bench`, driven over stdin and stdout; not for use by hand.")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.nargs(pos, 0, 0); err != nil {
		return err
	}
	signal.Ignore(os.Interrupt, syscall.SIGPIPE)
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
	)
	if err != nil {
		return fmt.Errorf("libp2p host: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ps, err := pubsub.NewGossipSub(ctx, h)
	if err != nil {
		h.Close()
		return fmt.Errorf("gossipsub: %w", err)
	}
	b := &benchBaseline{h: h, ps: ps, ctx: ctx, tallies: map[*tally]bool{}}
	hello := benchMsg{Peer: h.ID().String()}
	for _, a := range h.Addrs() {
		hello.Addrs = append(hello.Addrs, a.String()+"/p2p/"+h.ID().String())
	}
	exit, conn := serveBench(ctx, env.Stdin, env.Stdout, hello, b.handle)
	cancel()
	err = h.Close()
	conn.ack(exit, err)
	return err
}

// benchBaseline is the host and topic of a baseline child, and the tallies
// of messages it was asked to count.
type benchBaseline struct {
	h   host.Host
	ps  *pubsub.PubSub
	ctx context.Context // the child's life
	arms

	mu      sync.Mutex
	topic   *pubsub.Topic
	tallies map[*tally]bool
}

// handle runs one request of the bench.
func (b *benchBaseline) handle(ctx context.Context, m benchMsg) benchMsg {
	switch m.Op {
	case "connect":
		for _, s := range m.Addrs {
			ai, err := peer.AddrInfoFromString(s)
			if err != nil {
				return benchFail(err)
			}
			if err := b.h.Connect(ctx, *ai); err != nil {
				return benchFail(err)
			}
		}
		return benchMsg{}
	case "join":
		return b.join(m.Channel)
	case "publish":
		b.mu.Lock()
		t := b.topic
		b.mu.Unlock()
		if t == nil {
			return benchMsg{Error: "publish before join"}
		}
		return publishLoad(ctx, m.Count, m.Workers, m.Rate, func(ctx context.Context, i int) error {
			return t.Publish(ctx, []byte(benchText(m.Tag, i, m.Payload)))
		})
	case "arm-count":
		t := newTally(m, false)
		b.mu.Lock()
		b.tallies[t] = true
		b.mu.Unlock()
		idle, timeout := millis(m.IdleMs, 0), millis(m.TimeoutMs, 10*time.Minute)
		return benchMsg{Handle: b.arm(ctx, func(ctx context.Context) benchMsg {
			defer func() {
				b.mu.Lock()
				delete(b.tallies, t)
				b.mu.Unlock()
			}()
			return t.wait(ctx, idle, timeout)
		})}
	case "await":
		return b.await(ctx, m.Handle)
	}
	return benchMsg{Error: fmt.Sprintf("unknown request %q", m.Op)}
}

// join joins the topic and counts what arrives on it, in the tallies of the
// message's tag.
func (b *benchBaseline) join(name string) benchMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.topic != nil {
		return benchMsg{Error: "joined already"}
	}
	t, err := b.ps.Join(name)
	if err != nil {
		return benchFail(err)
	}
	sub, err := t.Subscribe()
	if err != nil {
		return benchFail(err)
	}
	b.topic = t
	go func() {
		for {
			msg, err := sub.Next(b.ctx)
			if err != nil {
				return
			}
			if msg.ReceivedFrom == b.h.ID() {
				continue
			}
			sent, tag, ok := parseBenchText(string(msg.Data))
			if !ok {
				continue
			}
			b.mu.Lock()
			for t := range b.tallies {
				if t.tag == tag {
					t.add(sent)
				}
			}
			b.mu.Unlock()
		}
	}()
	return benchMsg{}
}
