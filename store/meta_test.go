package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestMeta(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	if _, err := s.GetMeta("partners", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	for k, v := range map[string]string{"a": "1", "b": "2"} {
		if err := s.PutMeta("partners", k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// A namespace that is a prefix of another must not see its keys.
	if err := s.PutMeta("partner", "sa", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta(strings.Repeat("n", 256), "k", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("overlong namespace: %v", err)
	}
	if err := s.DeleteMeta("partners", "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMeta("partners", "missing"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, testOptions(t))
	all, err := s.ListMeta("partners")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || !bytes.Equal(all["a"], []byte("1")) {
		t.Fatalf("after reopen: %q", all)
	}
	if v, err := s.GetMeta("partners", "a"); err != nil || string(v) != "1" {
		t.Fatalf("get: %q %v", v, err)
	}
	if s.Count() != 0 {
		t.Fatalf("meta entries counted as records: %d", s.Count())
	}
}
