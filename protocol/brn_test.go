package protocol

import "testing"

// validBRNs are 사업자등록번호 whose check digits were computed by hand with
// the published algorithm (and, for the first, a well-known real number).
var validBRNs = []string{
	"1248100998", // 124-81-00998
	"1208147521",
	"1018115673",
	"2208100001",
	"1234567891",
	"6098100257",
	"1388101230",
	"3128600455",
	"0000000000",
}

func TestValidBRN(t *testing.T) {
	for _, s := range validBRNs {
		if !ValidBRN(s) {
			t.Errorf("ValidBRN(%q) = false, want true", s)
		}
		// Any change of one digit breaks the check digit.
		for i := range len(s) {
			for c := byte('0'); c <= '9'; c++ {
				if c == s[i] {
					continue
				}
				b := []byte(s)
				b[i] = c
				if ValidBRN(string(b)) {
					t.Errorf("ValidBRN(%q) = true after changing digit %d of %q", b, i+1, s)
				}
			}
		}
	}
}

func TestValidBRNForm(t *testing.T) {
	for _, s := range []string{
		"",
		"124810099",    // nine digits
		"12481009980",  // eleven digits
		"124-81-00998", // printed form
		"124 81 00998", // spaces
		"12481009９8",   // a full-width digit
		"124810099a",   // a letter
		"１２４８１００９９８",   // all full-width
	} {
		if ValidBRN(s) {
			t.Errorf("ValidBRN(%q) = true, want false", s)
		}
	}
}
