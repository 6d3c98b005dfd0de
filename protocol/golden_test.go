package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"
)

var update = flag.Bool("update", false, "rewrite the golden test vectors in testdata")

// golden is one test vector: a record, its bytes, CID and envelope.
type golden struct {
	Name string `json:"name"`
	// Seed is the byte that, repeated 32 times, is the author's ed25519 seed.
	Seed     byte            `json:"seed"`
	Record   json.RawMessage `json:"record"`
	Bytes    string          `json:"bytes"`
	CID      string          `json:"cid"`
	Envelope string          `json:"envelope"`
}

// goldenRecords builds the records behind the vectors in code, so that a
// change to the encoder, the JSON conversion or the envelope shows up as a
// difference from the stored bytes.
func goldenRecords(t *testing.T) []struct {
	name string
	seed byte
	s    *Signed
} {
	_, oem := testKey(t, 10)
	_, tier1 := testKey(t, 11)
	genesis := mustSeal(t, 10, &Record{
		Author: oem, Seq: 1, Time: 1795833000000, Kind: KindChannelGenesis, Links: nil,
		Body: map[string]any{
			"name":    "한빛모터스–대성정밀",
			"admins":  []any{oem.String()},
			"members": []any{oem.String(), tier1.String()},
		},
	})
	order := mustSeal(t, 10, &Record{
		Channel: genesis.CID, Author: oem, Seq: 2, Prev: genesis.CID, Time: 1795833060000,
		Kind: "order", Body: orderBody(),
	})
	response := mustSeal(t, 11, &Record{
		Channel: genesis.CID, Author: tier1, Seq: 1, Time: 1795836600123, Kind: "order-response",
		Links: []Link{{Rel: "responds-to", CID: order.CID}},
		Body: map[string]any{
			"docId": "RSP-0042", "docVersion": int64(1), "issuedAt": "2026-11-22T10:30:00.123+09:00",
			"orderRef":     map[string]any{"docId": "PO-2026-11-0042", "docVersion": int64(1)},
			"seller":       map[string]any{"scheme": "vendor", "id": "V-10293"},
			"buyer":        map[string]any{"scheme": "kr-brn", "id": "1248100998"},
			"responseCode": "accepted",
		},
	})
	values := mustSeal(t, 11, &Record{
		Channel: genesis.CID, Author: tier1, Seq: 2, Prev: response.CID, Time: 0, Kind: "note",
		Body: map[string]any{
			"text": "값 모음", "int": int64(-9007199254740993), "float": 2.5, "whole": 3.0,
			"yes": true, "no": false, "none": nil, "list": []any{}, "map": map[string]any{},
			"emoji": "🚗", "long key that sorts after the short ones": int64(1 << 40),
		},
	})
	return []struct {
		name string
		seed byte
		s    *Signed
	}{
		{"channel genesis", 10, genesis},
		{"order with prev", 10, order},
		{"order-response with a link", 11, response},
		{"every value type", 11, values},
	}
}

func TestGoldenVectors(t *testing.T) {
	path := filepath.Join("testdata", "golden.json")
	var got []golden
	for _, g := range goldenRecords(t) {
		j, err := g.s.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, golden{
			Name: g.name, Seed: g.seed, Record: j,
			Bytes: hex.EncodeToString(g.s.Bytes), CID: g.s.CID.String(), Envelope: hex.EncodeToString(g.s.Envelope),
		})
	}
	if *update {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./protocol -run Golden -update to create it)", err)
	}
	var want []golden
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(got) {
		t.Fatalf("%d vectors stored, %d built", len(want), len(got))
	}
	for i, w := range want {
		g := got[i]
		t.Run(w.Name, func(t *testing.T) {
			if g.Bytes != w.Bytes {
				t.Errorf("record bytes changed:\n got %s\nwant %s", g.Bytes, w.Bytes)
			}
			if g.CID != w.CID {
				t.Errorf("CID changed: got %s, want %s", g.CID, w.CID)
			}
			if g.Envelope != w.Envelope {
				t.Errorf("envelope changed:\n got %s\nwant %s", g.Envelope, w.Envelope)
			}
			// The stored vector opens and reproduces itself from its JSON.
			env, _ := hex.DecodeString(w.Envelope)
			s, err := Open(env)
			if err != nil {
				t.Fatalf("stored envelope does not open: %v", err)
			}
			if s.CID.String() != w.CID || hex.EncodeToString(s.Bytes) != w.Bytes {
				t.Fatal("stored envelope holds another record")
			}
			var jr JSONRecord
			if err := json.Unmarshal(w.Record, &jr); err != nil {
				t.Fatal(err)
			}
			r, err := jr.Record()
			if err != nil {
				t.Fatalf("stored JSON does not convert: %v", err)
			}
			b, err := r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(b) != w.Bytes {
				t.Fatalf("JSON converts to other bytes:\n got %x\nwant %s", b, w.Bytes)
			}
			if c, _ := cid.Decode(w.CID); Sum(b) != c {
				t.Fatal("JSON converts to another CID")
			}
			k, _ := testKey(t, w.Seed)
			again, err := Seal(r, k)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Envelope, env) {
				t.Fatal("resealing the JSON record gives another envelope (ed25519 is deterministic)")
			}
		})
	}
}
