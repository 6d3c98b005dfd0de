package main

import "testing"

// TestDemo runs the README's demo end to end: three real nodes, two
// channels, the week's records delivered, and nothing leaked to the OEM.
func TestDemo(t *testing.T) {
	if err := run(false); err != nil {
		t.Fatal(err)
	}
}
