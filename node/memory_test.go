package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// daemonMemoryLimit is the daemon's Go heap soft limit
// (cmd/sangsaeng daemon.go), which the memory test applies to itself.
const daemonMemoryLimit = 80 << 20

// heapWatch samples the process's heap until stopped and keeps the peaks:
// the live heap (as marked by the last GC) and the bytes of heap objects
// (live and not yet swept).
type heapWatch struct {
	stop     chan struct{}
	done     chan struct{}
	peakLive atomic.Uint64
	peakHeap atomic.Uint64
}

func watchHeap() *heapWatch {
	w := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	samples := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			rtmetrics.Read(samples)
			if v := samples[0].Value.Uint64(); v > w.peakLive.Load() {
				w.peakLive.Store(v)
			}
			if v := samples[1].Value.Uint64(); v > w.peakHeap.Load() {
				w.peakHeap.Store(v)
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *heapWatch) end() (live, heap uint64) {
	close(w.stop)
	<-w.done
	return w.peakLive.Load(), w.peakHeap.Load()
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// bigNote signs a note of seq in ch as key's author, as large as the note
// schema allows (65,536 characters of three bytes: some 192 KiB), each one
// different.
func bigNote(t testing.TB, key crypto.PrivKey, author peer.ID, ch cid.Cid, seq uint64, prev cid.Cid) *protocol.Signed {
	t.Helper()
	head := fmt.Sprintf("%d ", seq)
	text := head + strings.Repeat("가", 65536-len(head))
	r := &protocol.Record{Channel: ch, Author: author, Seq: seq, Prev: prev, Time: time.Now().UnixMilli(),
		Kind: "note", Body: map[string]any{"text": text}}
	s, err := protocol.Seal(r, key)
	if err != nil {
		t.Error(err)
		return nil
	}
	return s
}

// TestHostileAnswersBounded: members answer every sync, join and fetch
// with the largest answers they can, as fast as they can: four sync
// answers at once, each of hundreds of distinct valid records of the
// largest size, a "governance
// chain" of hundreds of envelope-sized frames, and fetch answers that
// announce the largest envelope and then stall, to a hundred concurrent
// fetches. With the daemon's 80 MiB soft limit applied, the process's live
// heap stays under it throughout, and the node still stores every valid
// record.
func TestHostileAnswersBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes some 200 MB to disk; runs without -short (and in .ci/run)")
	}
	old := debug.SetMemoryLimit(daemonMemoryLimit)
	defer debug.SetMemoryLimit(old)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	a := startNodeWith(t, "A", slog.LevelWarn, nil)
	ch, err := a.CreateChannel(ctx, "bounded", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Sync: syncMembers hostile members, each with one answer of
	// syncRecords distinct valid notes of the largest size, all at once,
	// so that the node-wide budget of sync bytes in flight is contended.
	// Each note is signed as it is sent, so that a sender holds one at a
	// time.
	const syncMembers, syncRecords = 4, 256
	keys := make([]crypto.PrivKey, syncMembers)
	mids := make([]peer.ID, syncMembers)
	hosts := make([]host.Host, syncMembers)
	for i := range syncMembers {
		keys[i], mids[i] = newKey(t)
		addMember(t, a, ch, mids[i])
		hosts[i] = bareHost(t, keys[i])
		key, mid := keys[i], mids[i]
		var served atomic.Int64
		hosts[i].SetStreamHandler(SyncID, func(st network.Stream) {
			defer st.Close()
			if _, err := readFrame(bufio.NewReader(st), maxHeadsFrame); err != nil {
				st.Reset()
				return
			}
			hm, err := (&protocol.HeadsMessage{Channel: ch, Heads: protocol.Heads{mid: syncRecords}}).Encode()
			if err != nil {
				st.Reset()
				return
			}
			w := bufio.NewWriterSize(st, 1<<20)
			_ = writeFrame(w, nil)
			_ = writeFrame(w, hm)
			if served.Add(1) == 1 { // later syncs: nothing new
				prev := cid.Undef
				for seq := uint64(1); seq <= syncRecords; seq++ {
					s := bigNote(t, key, mid, ch, seq, prev)
					if s == nil {
						st.Reset()
						return
					}
					if err := writeFrame(w, s.Envelope); err != nil {
						st.Reset()
						return
					}
					prev = s.CID
				}
			}
			_ = writeFrame(w, nil)
			_ = w.Flush()
		})
	}
	key, mid, h := keys[0], mids[0], hosts[0]

	watch := watchHeap()
	runtime.GC()
	baseLive := func() uint64 {
		s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
		rtmetrics.Read(s)
		return s[0].Value.Uint64()
	}()
	for _, h := range hosts {
		if err := h.Connect(ctx, addrInfo(a)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "A to store the hostile members' sync answers", 2*time.Minute, func() bool {
		hs := heads(t, a, ch)
		for _, m := range mids {
			if hs[m] != syncRecords {
				return false
			}
		}
		return true
	})
	syncLive, syncHeap := watch.end()
	t.Logf("sync: %d members answering at once, %d records of %d KiB each stored; peak live heap %s, peak heap objects %s (live before %s)",
		syncMembers, syncRecords, 192, mib(syncLive), mib(syncHeap), mib(baseLive))

	// Join: the member invites A to a channel and answers the join with
	// frames of the largest envelope size until A hangs up.
	const joinFrames = 600
	frame := make([]byte, protocol.MaxEnvelopeSize)
	for i := range frame {
		frame[i] = byte(i)
	}
	var joinSent atomic.Int64
	h.SetStreamHandler(JoinID, func(st network.Stream) {
		defer st.Close()
		if _, err := readFrame(bufio.NewReader(st), 128); err != nil {
			st.Reset()
			return
		}
		w := bufio.NewWriterSize(st, 1<<20)
		_ = writeFrame(w, nil)
		for range joinFrames {
			if err := writeFrame(w, frame); err != nil {
				st.Reset()
				return
			}
			joinSent.Add(1)
		}
		_ = writeFrame(w, nil)
		_ = w.Flush()
	})
	other, err := protocol.Seal(&protocol.Record{Channel: ch, Author: mid, Seq: 1, Time: 1, Kind: "note", Body: map[string]any{"text": "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	iv := invite{Channel: other.CID.String(), Inviter: mid.String()}
	for _, ad := range h.Addrs() {
		iv.Addrs = append(iv.Addrs, ad.String())
	}
	runtime.GC()
	watch = watchHeap()
	_, joinErr := a.Join(ctx, encodeInvite(iv))
	joinLive, joinHeap := watch.end()
	if joinErr == nil {
		t.Fatal("A joined a channel on a governance chain of garbage")
	}
	t.Logf("join: refused after %d frames sent (%v); peak live heap %s, peak heap objects %s", joinSent.Load(), joinErr, mib(joinLive), mib(joinHeap))

	// Fetch: every fetch is answered with the length of the largest
	// envelope and half its bytes, then nothing until the fetch gives up.
	stall := make(chan struct{})
	var fetchesSeen atomic.Int64
	h.SetStreamHandler(FetchID, func(st network.Stream) {
		defer st.Reset()
		if _, err := readFrame(bufio.NewReader(st), 128); err != nil {
			return
		}
		fetchesSeen.Add(1)
		w := bufio.NewWriter(st)
		_ = writeFrame(w, nil)
		var hdr [10]byte
		k := binary.PutUvarint(hdr[:], uint64(len(frame)))
		_, _ = w.Write(hdr[:k])
		_, _ = w.Write(frame[:len(frame)/2])
		_ = w.Flush()
		<-stall
	})
	const fetchers = 100
	var missing []cid.Cid
	for i := range fetchers {
		missing = append(missing, chain(t, key, other.CID, 0, cid.Undef, 1, fmt.Sprint("not held ", i))[0].CID)
	}
	runtime.GC()
	watch = watchHeap()
	fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
	var wg sync.WaitGroup
	var fetchErrs atomic.Int64
	for _, c := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Fetch(fctx, c); err != nil {
				fetchErrs.Add(1)
			}
		}()
	}
	wg.Wait()
	fcancel()
	close(stall)
	fetchLive, fetchHeap := watch.end()
	if fetchErrs.Load() != fetchers {
		t.Fatalf("%d of %d fetches of records nobody holds succeeded", fetchers-fetchErrs.Load(), fetchers)
	}
	t.Logf("fetch: %d concurrent fetches, %d reached the member, all failed; peak live heap %s, peak heap objects %s",
		fetchers, fetchesSeen.Load(), mib(fetchLive), mib(fetchHeap))

	for _, p := range []struct {
		what string
		live uint64
	}{{"sync", syncLive}, {"join", joinLive}, {"fetch", fetchLive}} {
		if p.live >= daemonMemoryLimit {
			t.Errorf("%s: the live heap peaked at %s, over the daemon's soft limit of %s", p.what, mib(p.live), mib(daemonMemoryLimit))
		}
	}
}
