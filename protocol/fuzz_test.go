package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
)

// goldenSeeds returns the stored test vectors' record bytes and envelopes.
func goldenSeeds(f *testing.F) (records, envelopes [][]byte) {
	raw, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		f.Fatal(err)
	}
	var gs []golden
	if err := json.Unmarshal(raw, &gs); err != nil {
		f.Fatal(err)
	}
	for _, g := range gs {
		b, _ := hex.DecodeString(g.Bytes)
		e, _ := hex.DecodeString(g.Envelope)
		records, envelopes = append(records, b), append(envelopes, e)
	}
	return records, envelopes
}

// FuzzDecode holds the decoder to its contract: no panic, and whatever it
// accepts re-encodes to exactly the same bytes and passes Check.
func FuzzDecode(f *testing.F) {
	records, _ := goldenSeeds(f)
	for _, b := range records {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error outside the contract: %v", err)
			}
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("decoded record fails Check: %v", err)
		}
		again, err := r.Encode()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decode/encode changed the bytes:\n in %x\nout %x", b, again)
		}
	})
}

// FuzzOpen holds envelope opening to its contract: no panic, and whatever
// opens is self-consistent and loads the same way from the store path.
func FuzzOpen(f *testing.F) {
	_, envelopes := goldenSeeds(f)
	for _, e := range envelopes {
		f.Add(e)
	}
	for _, s := range mustSealBatch(f, 7, batchRecords(f, 7, 5)) {
		f.Add(s.Envelope)
	}
	f.Fuzz(func(t *testing.T, env []byte) {
		s, err := Open(env)
		if err != nil {
			return
		}
		if Sum(s.Bytes) != s.CID {
			t.Fatal("CID is not the hash of the record bytes")
		}
		if !bytes.Equal(s.Envelope, env) {
			t.Fatal("the envelope changed")
		}
		l, err := Load(env)
		if err != nil || l.CID != s.CID || !reflect.DeepEqual(l.Record, s.Record) {
			t.Fatalf("Load disagrees with Open: %v", err)
		}
	})
}

// FuzzParseBody holds JSON body parsing to its contract: no panic, and any
// body it accepts encodes in a record, decodes back equal, and renders as
// JSON that parses back equal.
func FuzzParseBody(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "bodies", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{}`, `{"a":[1,2.5,-3,"x",null,true,{"b":[]}]}`, "{\"\u1100\u1161\":\"\u1100\u1161\"}", `{"n":1e300}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		body, err := ParseBody(data)
		if err != nil {
			if !errors.Is(err, ErrBadJSON) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error outside the contract: %v", err)
			}
			return
		}
		r := testRecord(t, 30, 1, cid.Undef)
		r.Body = body
		b, err := r.Encode()
		if errors.Is(err, ErrTooLarge) {
			return
		}
		if err != nil {
			t.Fatalf("parsed body does not encode: %v", err)
		}
		back, err := Decode(b)
		if err != nil {
			t.Fatalf("encoded body does not decode: %v", err)
		}
		if !reflect.DeepEqual(back.Body, body) {
			t.Fatalf("body changed through CBOR:\n got %#v\nwant %#v", back.Body, body)
		}
		out, err := BodyJSON(body)
		if err != nil {
			t.Fatalf("parsed body does not render: %v", err)
		}
		again, err := ParseBody(out)
		if err != nil || !reflect.DeepEqual(again, body) {
			t.Fatalf("body changed through JSON %s: %v", out, err)
		}
	})
}

// FuzzDecodeBundle holds bundle decoding to its bounds: no panic, at most
// MaxBundle envelopes, each inside the message, and a bundle of what it
// returned decodes to the same envelopes.
func FuzzDecodeBundle(f *testing.F) {
	var envs [][]byte
	for _, s := range mustSealBatch(f, 8, batchRecords(f, 8, 3)) {
		envs = append(envs, s.Envelope)
	}
	f.Add(EncodeBundle(envs))
	f.Add(EncodeBundle(envs[:1]))
	f.Add([]byte{0x82, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, err := DecodeBundle(msg)
		if err != nil {
			return
		}
		total := 0
		for _, e := range got {
			total += len(e)
		}
		if len(got) == 0 || len(got) > MaxBundle || total > len(msg) || !IsBundle(msg) {
			t.Fatalf("%d envelopes of %d bytes from a message of %d", len(got), total, len(msg))
		}
		again, err := DecodeBundle(EncodeBundle(got))
		if err != nil || len(again) != len(got) {
			t.Fatalf("re-encoded bundle: %d envelopes, %v", len(again), err)
		}
		for i := range got {
			if !bytes.Equal(again[i], got[i]) {
				t.Fatalf("envelope %d changed", i)
			}
		}
	})
}

// FuzzBatchEnvelopeCanonical: whatever parses as a batch envelope is the
// encoder's bytes for its fields, so a record has one batch envelope for
// each signature, index and proof.
func FuzzBatchEnvelopeCanonical(f *testing.F) {
	for _, s := range mustSealBatch(f, 9, batchRecords(f, 9, 3)) {
		f.Add(s.Envelope)
	}
	f.Fuzz(func(t *testing.T, env []byte) {
		e, err := parseBatchEnvelope(env)
		if err != nil {
			return
		}
		if again := encodeBatchEnvelope(e.pub, e.payload, e.sig, e.size, e.index, e.proof); !bytes.Equal(again, env) {
			t.Fatalf("parsed, but not the encoder's bytes:\n%x\n%x", env, again)
		}
		// What opens has the key in libp2p's form for it.
		if _, err := Open(env); err == nil {
			k, err := crypto.UnmarshalPublicKey(e.pub)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := crypto.MarshalPublicKey(k); !bytes.Equal(again, e.pub) {
				t.Fatalf("opened with a key in another form: %x", e.pub)
			}
		}
	})
}
