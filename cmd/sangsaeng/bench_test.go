package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// benchTiny is a configuration of `sangsaeng bench` that runs in seconds.
var benchTiny = []string{"--records", "200", "--latency-records", "100", "--catchup-records", "300", "--startup-records", "1000",
	"--rate", "200", "--curve", "400", "--load-batch", "16", "--idle", "2s"}

// TestBenchJSON runs the bench on a tiny configuration and checks that it
// prints one well-formed JSON object. It asserts nothing about speed.
func TestBenchJSON(t *testing.T) {
	bin := buildBinary(t) // skips with -short
	tmp := t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"bench", "--json"}, benchTiny...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Run(); err != nil {
		t.Fatalf("sangsaeng bench: %v\n%s", err, stderr.String())
	}
	t.Logf("stderr:\n%s", stderr.String())

	dec := json.NewDecoder(&stdout)
	var rep map[string]any
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout.String())
	}
	if dec.More() {
		t.Fatalf("more than one JSON value on stdout:\n%s", stdout.String())
	}
	num := func(key string) float64 {
		t.Helper()
		v, ok := rep[key].(float64)
		if !ok {
			t.Fatalf("%s: missing or not a number in %v", key, rep)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("%s = %v", key, v)
		}
		return v
	}
	for _, key := range []string{"delivered_per_sec", "p50_ms", "p99_ms", "catchup_per_sec"} {
		if v := num(key); v <= 0 {
			t.Errorf("%s = %v, want > 0", key, v)
		}
	}
	// Bare gossipsub may drop everything on a busy machine (it did in CI):
	// that is a measurement, and then there is no ratio to print.
	for base, ratio := range map[string]string{"baseline_per_sec": "ratio", "baseline_steady_per_sec": "ratio_steady"} {
		v := num(base)
		switch _, has := rep[ratio]; {
		case v < 0:
			t.Errorf("%s = %v, want >= 0", base, v)
		case v > 0 && num(ratio) <= 0:
			t.Errorf("%s = %v with %s = %v, want > 0", ratio, rep[ratio], base, v)
		case v == 0 && has:
			t.Errorf("%s = %v with %s = 0", ratio, rep[ratio], base)
		}
	}
	if steps, _ := rep["baseline_steps"].([]any); len(steps) == 0 {
		t.Errorf("baseline_steps = %v, want the ramp's steps", rep["baseline_steps"])
	}
	if rss := num("rss_mb"); rss < 0 || (runtime.GOOS == "linux" && rss == 0) {
		t.Errorf("rss_mb = %v", rss)
	}
	for _, key := range []string{"delivered", "lost", "baseline_delivered", "baseline_lost", "latency_received", "catchup_received"} {
		if v := num(key); v < 0 || v != math.Trunc(v) {
			t.Errorf("%s = %v, want a count", key, v)
		}
	}
	if d, l := num("delivered"), num("lost"); d+l != 200 {
		t.Errorf("delivered %v + lost %v != 200 records", d, l)
	}
	if got := num("catchup_received"); got != 300 {
		t.Errorf("catchup_received = %v, want 300", got)
	}
	if p50, p99 := num("p50_ms"), num("p99_ms"); p50 > p99 {
		t.Errorf("p50 %v ms > p99 %v ms", p50, p99)
	}
	// The curve: --rate first, then --curve, each with its percentiles.
	curve, _ := rep["latency_curve"].([]any)
	if len(curve) != 2 {
		t.Fatalf("latency_curve = %v, want the rates 200 and 400", rep["latency_curve"])
	}
	for i, want := range []float64{200, 400} {
		p, _ := curve[i].(map[string]any)
		if p["rate"] != want || p["received"] != 100.0 {
			t.Errorf("latency_curve[%d] = %v, want rate %v with 100 received", i, p, want)
		}
		if p50, _ := p["p50_ms"].(float64); p50 <= 0 || p50 > p["p99_ms"].(float64) {
			t.Errorf("latency_curve[%d]: p50 %v, p99 %v", i, p["p50_ms"], p["p99_ms"])
		}
	}
	if got := num("load_batch"); got != 16 {
		t.Errorf("load_batch = %v, want 16", got)
	}
	// Start-up: the member holds at least the records asked for.
	if held := num("startup_held"); held < 1000 {
		t.Errorf("startup_held = %v, want at least 1000", held)
	}
	if ms, open := num("startup_ms"), num("startup_open_ms"); ms <= 0 || open <= 0 || open > ms {
		t.Errorf("startup_ms = %v with startup_open_ms = %v", ms, open)
	}
	if c, ok := rep["counters"].(map[string]any); !ok || c["throughput"] == nil || c["catchup"] == nil || c["startup"] == nil {
		t.Errorf("counters = %v, want the nodes' counters by phase", rep["counters"])
	}
	if base := num("baseline_per_sec"); base > 0 {
		want := num("delivered_per_sec") / base
		if r := num("ratio"); math.Abs(r-want) > 1e-3*want+1e-4 {
			t.Errorf("ratio = %v, delivered/baseline = %v", r, want)
		}
	}

	// The nodes' temporary homes are gone.
	left, err := filepath.Glob(filepath.Join(tmp, "sangsaeng-bench-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("temporary homes left behind: %v", left)
	}
}

// TestBenchTable checks the table for people on the quickest phases.
func TestBenchTable(t *testing.T) {
	bin := buildBinary(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, append([]string{"bench", "--phases", "throughput,latency"}, benchTiny...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sangsaeng bench: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"delivered", "records/s", "latency", "p99", "memory", "MB"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, absent := range []string{"baseline", "catch-up", "start-up", "ratio"} {
		if strings.Contains(out, absent) {
			t.Errorf("table shows %q of a phase not run:\n%s", absent, out)
		}
	}
	if !strings.Contains(stderr.String(), "publishing 200 records") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--phases", "warp"},
		{"--nodes", "1"},
		{"--payload", "0"},
		{"--rate", "0"},
		{"extra"},
	} {
		env, _, stderr := benchTestEnv()
		if code := run(t.Context(), env, append([]string{"bench"}, args...)); code != 2 {
			t.Errorf("bench %v: exit status %d, want 2; stderr %q", args, code, stderr)
		}
	}
}

func TestParsePhases(t *testing.T) {
	for in, want := range map[string]string{
		"all":                 "baseline,throughput,latency,catchup,startup",
		"catchup,baseline":    "baseline,catchup",
		"latency, throughput": "throughput,latency",
	} {
		got, err := parsePhases(in)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("parsePhases(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parsePhases("all,latency"); err == nil {
		t.Error("parsePhases(all,latency) did not fail")
	}
}

func TestBenchText(t *testing.T) {
	s := benchText("t", 42, 256)
	if len(s) != 256 {
		t.Errorf("len = %d, want 256", len(s))
	}
	sent, tag, ok := parseBenchText(s)
	if !ok || tag != "t" || sent <= 0 {
		t.Errorf("parseBenchText = %d, %q, %v", sent, tag, ok)
	}
	if _, _, ok := parseBenchText("hello"); ok {
		t.Error("parseBenchText accepted a text not made by benchText")
	}
	if s := benchText("t", 1, 4); !strings.HasSuffix(s, " t 1 ") {
		t.Errorf("short text %q lost its head", s)
	}
}

func TestPercentile(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(i + 1)
	}
	for p, want := range map[float64]float64{50: 50, 99: 99, 100: 100, 0: 1} {
		if got := percentile(v, p); got != want {
			t.Errorf("percentile(%v) = %v, want %v", p, got, want)
		}
	}
	if got := groupDigits("1234567"); got != "1,234,567" {
		t.Errorf("groupDigits = %q", got)
	}
}

// benchTestEnv returns an environment writing to buffers.
func benchTestEnv() (*Env, *bytes.Buffer, *bytes.Buffer) {
	var o, e bytes.Buffer
	return &Env{Stdin: strings.NewReader(""), Stdout: &o, Stderr: &e, Getenv: func(string) string { return "" }}, &o, &e
}
