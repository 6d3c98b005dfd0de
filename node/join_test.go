package node

import (
	"bufio"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestJoinVerifiesFirst: a joining node checks the inviter's answer before
// it admits the inviter as a partner. A fake inviter (a bare libp2p host that
// speaks the join protocol) answers with a refusal, nothing, the genesis of
// another channel, a chain that does not list the joiner, a tampered
// signature, and a chain that does not list the inviter: each join fails, and
// the fake is neither in the joiner's partner book nor admitted by its gater
// nor connected, and the joiner holds no channel. Then a real invite works
// and puts the inviter in the book.
func TestJoinVerifiesFirst(t *testing.T) {
	j, a := startNode(t, "J"), startNode(t, "A")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch, err := a.CreateChannel(ctx, "real", "", []peer.ID{j.ID()})
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.CreateChannel(ctx, "other", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	envelopes := func(c cid.Cid) [][]byte {
		snap, ok := a.gov.channel(c)
		if !ok {
			t.Fatalf("A has no channel %s", c)
		}
		var out [][]byte
		for _, s := range snap.governance {
			out = append(out, s.Envelope)
		}
		return out
	}
	tampered := slices.Clone(envelopes(ch)[0])
	tampered[len(tampered)-1] ^= 1 // in the signature

	fake := bareHost(t, nil)
	var mu sync.Mutex
	var status []byte
	var answer [][]byte
	fake.SetStreamHandler(JoinID, func(st network.Stream) {
		defer st.Close()
		if _, err := readFrame(bufio.NewReader(st), 128); err != nil {
			st.Reset()
			return
		}
		mu.Lock()
		defer mu.Unlock()
		w := bufio.NewWriter(st)
		_ = writeFrame(w, status)
		if len(status) == 0 {
			for _, env := range answer {
				_ = writeFrame(w, env)
			}
			_ = writeFrame(w, nil)
		}
		_ = w.Flush()
	})
	codeFor := func(c cid.Cid) string {
		iv := invite{Channel: c.String(), Inviter: fake.ID().String()}
		for _, addr := range fake.Addrs() {
			iv.Addrs = append(iv.Addrs, addr.String())
		}
		return encodeInvite(iv)
	}
	for _, tc := range []struct {
		name    string
		invite  cid.Cid
		status  string
		answer  [][]byte
		wantErr string
	}{
		{"refused", ch, "no", nil, "refused"},
		{"empty answer", ch, "", nil, "no genesis"},
		{"genesis of another channel", ch, "", envelopes(other), "of channel"},
		{"joiner not listed", other, "", envelopes(other), "not a member"},
		{"tampered signature", ch, "", [][]byte{tampered}, "record 0"},
		{"inviter not listed", ch, "", envelopes(ch), "the inviter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			status, answer = []byte(tc.status), tc.answer
			mu.Unlock()
			_, err := j.Join(ctx, codeFor(tc.invite))
			if err == nil {
				t.Fatal("the join succeeded")
			}
			t.Log(err)
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.wantErr)) {
				t.Fatalf("error %q does not say %q", err, tc.wantErr)
			}
			if j.partners.has(fake.ID()) {
				t.Fatal("the fake inviter is in the partner book")
			}
			if j.gater.allowed(fake.ID()) {
				t.Fatal("the gater still admits the fake inviter")
			}
			waitFor(t, "the fake inviter to be disconnected", 10*time.Second, func() bool {
				return j.host.Network().Connectedness(fake.ID()) != network.Connected
			})
			for _, c := range []cid.Cid{ch, other} {
				if _, ok := j.gov.channel(c); ok {
					t.Fatalf("the joiner holds channel %s", c)
				}
			}
		})
	}

	code, err := a.Invite(ctx, ch, j.ID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Join(ctx, code); err != nil {
		t.Fatal(err)
	}
	if !j.partners.has(a.ID()) || !j.gov.isJoined(ch) {
		t.Fatal("a good join did not make the inviter a partner")
	}
}
