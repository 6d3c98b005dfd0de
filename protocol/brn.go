package protocol

// brnWeights are the weights of the first nine digits of a 사업자등록번호.
var brnWeights = [9]int{1, 3, 7, 1, 3, 7, 1, 3, 5}

// ValidBRN reports whether s is a valid Korean business registration number
// (사업자등록번호): exactly ten ASCII digits, no dashes or spaces, whose last
// digit is the check digit of the first nine. With digits d1 … d10 and weights
// 1 3 7 1 3 7 1 3 5, sum = Σ di·wi (i = 1 … 9) + ⌊d9·5 / 10⌋, and
// d10 = (10 − sum mod 10) mod 10.
//
// The printed form "123-45-67890" is not accepted: callers that take
// user input strip the dashes first, so that a record holds one spelling.
func ValidBRN(s string) bool {
	if len(s) != 10 {
		return false
	}
	var d [10]int
	for i := 0; i < 10; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		d[i] = int(c - '0')
	}
	sum := 0
	for i, w := range brnWeights {
		sum += d[i] * w
	}
	sum += d[8] * 5 / 10
	return (10-sum%10)%10 == d[9]
}
