// Package govgen generates realistic sets of governance records for tests:
// admins on several nodes that edit a channel's membership concurrently,
// exchange what they know now and then, replace the list of admins, remove
// one another, and re-add removed members.
package govgen

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// Set is a generated channel: its genesis, every change any admin made, and
// the companies involved.
type Set struct {
	Genesis *protocol.Signed
	Changes []*protocol.Signed
	Peers   []peer.ID
	Keys    []crypto.PrivKey
	// Stats counts what the set holds, so that a test can check it covers
	// every rule.
	Stats Stats
}

// Stats counts the kinds of edit in a Set.
type Stats struct {
	Adds, Removes, AdminRemoves, AdminLists, ReAdds, Concurrent int
}

// Key returns the fixed key of company i.
func Key(i int) crypto.PrivKey {
	s := make([]byte, ed25519.SeedSize)
	s[0], s[1] = byte(i), 0x5a
	k, err := crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(s))
	if err != nil {
		panic(err) // a 64-byte ed25519 key always unmarshals
	}
	return k
}

// replica is one company's node: what it knows.
type replica struct {
	known map[cid.Cid]*protocol.Signed
}

func (r *replica) changes() []*protocol.Signed {
	out := make([]*protocol.Signed, 0, len(r.known))
	for _, s := range r.known {
		out = append(out, s)
	}
	return out
}

// Generate makes a channel of companies companies (at least 4) and steps
// random steps: company 0 founds it with companies 0 and 1 as admins and
// 0..3 as members.
func Generate(rng *rand.Rand, companies, steps int) (*Set, error) {
	companies = max(companies, 4)
	set := &Set{}
	for i := range companies {
		k := Key(i)
		id, err := peer.IDFromPrivateKey(k)
		if err != nil {
			return nil, err
		}
		set.Keys, set.Peers = append(set.Keys, k), append(set.Peers, id)
	}
	ps := func(ids ...peer.ID) []any {
		out := make([]any, len(ids))
		for i, p := range ids {
			out[i] = p.String()
		}
		return out
	}
	gen, err := protocol.Seal(&protocol.Record{
		Author: set.Peers[0], Seq: 1, Time: 1, Kind: protocol.KindChannelGenesis,
		Body: map[string]any{"name": "gen", "admins": ps(set.Peers[0], set.Peers[1]), "members": ps(set.Peers[:4]...)},
	}, set.Keys[0])
	if err != nil {
		return nil, err
	}
	set.Genesis = gen
	ch := gen.CID
	seq := make([]uint64, companies)
	prev := make([]cid.Cid, companies)
	seq[0], prev[0] = 1, gen.CID
	reps := make([]*replica, companies)
	for i := range reps {
		reps[i] = &replica{known: map[cid.Cid]*protocol.Signed{}}
	}
	everRemoved := map[peer.ID]bool{}
	for range steps {
		switch x := rng.IntN(10); {
		case x < 3: // two companies exchange what they know
			a, b := reps[rng.IntN(companies)], reps[rng.IntN(companies)]
			for c, s := range a.known {
				b.known[c] = s
			}
			if rng.IntN(2) == 0 {
				for c, s := range b.known {
					a.known[c] = s
				}
			}
		case x < 4: // business records move a company's seq on
			i := rng.IntN(companies)
			seq[i] += uint64(1 + rng.IntN(3))
			prev[i] = protocol.Sum(fmt.Appendf(nil, "business %d %d", i, seq[i]))
		default: // an admin, in its own view, edits membership
			i := rng.IntN(companies)
			r := reps[i]
			v := protocol.Membership(gen, r.changes())
			if !v.IsAdmin(set.Peers[i]) {
				continue
			}
			body := map[string]any{}
			target := set.Peers[rng.IntN(companies)]
			switch y := rng.IntN(10); {
			case y < 4:
				if everRemoved[target] {
					set.Stats.ReAdds++
				}
				set.Stats.Adds++
				body["add"] = ps(target)
			case y < 7:
				if target == set.Peers[i] || !v.IsMember(target) {
					continue
				}
				if v.IsAdmin(target) {
					set.Stats.AdminRemoves++
				}
				set.Stats.Removes++
				everRemoved[target] = true
				last := seq[slices.Index(set.Peers, target)]
				last -= min(last, uint64(rng.IntN(3)))
				body["remove"] = []any{map[string]any{"member": target.String(), "lastSeq": int64(last)}}
			default:
				admins := []peer.ID{set.Peers[i]}
				if rng.IntN(4) == 0 { // step down for another
					admins = nil
				}
				for _, m := range v.Members {
					if m != set.Peers[i] && rng.IntN(3) == 0 {
						admins = append(admins, m)
					}
				}
				if len(admins) == 0 {
					continue
				}
				set.Stats.AdminLists++
				body["admins"] = ps(admins...)
			}
			if len(v.Heads) > 1 {
				set.Stats.Concurrent++
			}
			var links []protocol.Link
			for _, h := range v.Heads {
				links = append(links, protocol.Link{Rel: protocol.RelAfter, CID: h})
			}
			seq[i]++
			s, err := protocol.Seal(&protocol.Record{
				Channel: ch, Author: set.Peers[i], Seq: seq[i], Prev: prev[i], Time: int64(len(set.Changes) + 2),
				Kind: protocol.KindChannelMembers, Links: links, Body: body,
			}, set.Keys[i])
			if err != nil {
				return nil, err
			}
			prev[i] = s.CID
			r.known[s.CID] = s
			set.Changes = append(set.Changes, s)
		}
	}
	return set, nil
}
