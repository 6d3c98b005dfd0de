package interchange

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// valueKind says how a cell becomes a value.
type valueKind int

const (
	vCode     valueKind = iota // an identifier kept as text: part, lot, line, document numbers
	vText                      // free text
	vInt                       // a whole number
	vDecimal                   // a number ≥ 0 as a decimal string: quantities, prices
	vDateTime                  // an RFC 3339 timestamp; a date alone is midnight in the zone
	vDate                      // a calendar date
	vUnit                      // a UN/ECE Rec 20 unit code, with the usual aliases
	vParty                     // a company's ID: a business registration number, or a code
	vScheme                    // a party or location scheme
	vList                      // codes separated by ; or ,
	vEnum                      // a word from a fixed list, lower case
	vCurrency                  // an ISO 4217 code
)

// cell is one value of a row, as the file holds it.
type cell struct {
	text string // what the file shows (CSV: the field; XLSX: the formatted value)
	raw  string // XLSX: the stored value (a date's serial number); CSV: the field
	xlsx bool
	// date1904: the workbook counts dates from 1904 (Mac Excel's
	// option), not 1900.
	date1904 bool
}

var (
	decimalRE    = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	scientificRE = regexp.MustCompile(`^[0-9](\.[0-9]+)?[eE][+-]?[0-9]+$`)
	floatRE      = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	unitRE       = regexp.MustCompile(`^[A-Z0-9]{2,3}$`)
	currencyRE   = regexp.MustCompile(`^[A-Z]{3}$`)
)

// unitAliases are the unit names Korean files use for Rec 20 codes.
var unitAliases = map[string]string{
	"EA": "H87", "PCS": "H87", "PC": "H87", "개": "H87", "EACH": "H87",
	"KG": "KGM", "M": "MTR", "L": "LTR", "MM": "MMT", "G": "GRM", "T": "TNE", "TON": "TNE",
	"SET": "SET", "세트": "SET", "PR": "PR", "쌍": "PR", "BOX": "BX", "박스": "BX",
}

// parseValue turns a cell into the value of a field of kind k, or says
// what is wrong with it in words a person at a factory reads.
func parseValue(k valueKind, c cell, zone *time.Location, enum []string) (any, error) {
	s := strings.TrimSpace(c.text)
	switch k {
	case vCode:
		if c.xlsx && floatRE.MatchString(c.raw) && c.raw != c.text {
			// A number Excel stores: what it shows keeps a format's
			// leading zeros; one it shows in scientific notation is
			// taken from the stored digits when they are not in that
			// notation too.
			if scientificRE.MatchString(s) && !scientificRE.MatchString(c.raw) {
				s = exactDigits(c.raw)
			}
		}
		if scientificRE.MatchString(s) {
			return nil, fmt.Errorf("%q looks like a number Excel rewrote in scientific notation: format the column as text in Excel and save the file again", s)
		}
		return s, nil
	case vText:
		return s, nil
	case vInt:
		v, err := strconv.ParseInt(strings.ReplaceAll(s, ",", ""), 10, 64)
		if err != nil && c.xlsx {
			if f, ferr := strconv.ParseFloat(c.raw, 64); ferr == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				v, err = int64(f), nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", s)
		}
		return v, nil
	case vDecimal:
		v := s
		if c.xlsx && floatRE.MatchString(c.raw) {
			v = exactDigits(c.raw) // the stored number, not a rounded display
		}
		v = strings.ReplaceAll(strings.ReplaceAll(v, ",", ""), " ", "")
		if !decimalRE.MatchString(v) {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		v = strings.TrimLeft(v, "0")
		if v == "" || v[0] == '.' {
			v = "0" + v
		}
		return v, nil
	case vDateTime, vDate:
		t, _, err := parseTime(c, zone)
		if err != nil {
			return nil, err
		}
		if k == vDate {
			return t.Format(time.DateOnly), nil
		}
		return t.Format(time.RFC3339), nil
	case vUnit:
		u := strings.ToUpper(s)
		if a, ok := unitAliases[u]; ok {
			u = a
		}
		if !unitRE.MatchString(u) {
			return nil, fmt.Errorf("%q is not a unit: use a UN/ECE Rec 20 code (H87 piece, KGM, MTR, LTR, SET …) or EA, PCS, KG, M", s)
		}
		return u, nil
	case vParty, vScheme, vList:
		return s, nil
	case vEnum:
		v := strings.ToLower(strings.ReplaceAll(s, " ", "_"))
		if a, ok := enumAliases[s]; ok {
			v = a
		}
		for _, e := range enum {
			if v == e {
				return v, nil
			}
		}
		return nil, fmt.Errorf("%q is not one of %s", s, strings.Join(enum, ", "))
	case vCurrency:
		v := strings.ToUpper(s)
		if a, ok := currencyAliases[s]; ok {
			v = a
		}
		if !currencyRE.MatchString(v) {
			return nil, fmt.Errorf("%q is not a currency: use an ISO 4217 code such as KRW, USD, EUR", s)
		}
		return v, nil
	}
	return nil, fmt.Errorf("no parser for this column")
}

var currencyAliases = map[string]string{"원": "KRW", "₩": "KRW", "$": "USD", "달러": "USD", "€": "EUR", "유로": "EUR", "엔": "JPY", "위안": "CNY"}

// enumAliases are the Korean words for the enumerated values.
var enumAliases = map[string]string{
	"합격": "pass", "불합격": "fail", "조건부": "conditional", "조건부합격": "conditional",
	"수입검사": "incoming", "공정검사": "in_process", "최종검사": "final", "출하검사": "outgoing",
	"가용": "available", "정상": "available", "보류": "blocked", "품질보류": "quality_hold", "이동중": "in_transit", "운송중": "in_transit",
	"입고": "inbound", "출고": "outbound",
	"일반": "standard", "분할납품": "call-off", "샘플": "sample",
}

// exactDigits writes a number Excel stored (possibly "1.2345E+14") as
// plain decimal digits: an integer exactly, a fraction to the 15
// significant digits Excel keeps (a formula's 0.30000000000000004 is 0.3).
func exactDigits(raw string) string {
	f, _, err := big.ParseFloat(raw, 10, 256, big.ToNearestEven)
	if err != nil {
		return raw
	}
	if f.IsInt() {
		i, _ := f.Int(nil)
		return i.String()
	}
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return raw
	}
	v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 15, 64), 64)
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// dateLayouts are the ways dates and times are written in the files.
var dateLayouts = []string{
	time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04",
	"2006.01.02 15:04:05", "2006.01.02 15:04", "2006/01/02 15:04:05", "2006/01/02 15:04",
}

var dateOnlyLayouts = []string{"2006-01-02", "2006.01.02", "2006/01/02", "20060102", "2006.1.2", "2006-1-2", "2006/1/2"}

// parseTime reads a date or a date and time. A value without an offset is
// in zone. An XLSX cell holding a serial number is a date (and time) in
// Excel's 1900 system.
func parseTime(c cell, zone *time.Location) (time.Time, bool, error) {
	s := strings.TrimSpace(c.text)
	if c.xlsx && floatRE.MatchString(c.raw) {
		if f, err := strconv.ParseFloat(c.raw, 64); err == nil && f > 0 && f < 2958466 {
			days := int(math.Floor(f))
			secs := int(math.Round((f - math.Floor(f)) * 86400))
			var d time.Time
			switch {
			case c.date1904:
				d = time.Date(1904, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
			case days == 60:
				return time.Time{}, false, fmt.Errorf("%q is Excel's day 60, 1900-02-29, a date that did not exist: write the date again", s)
			case days < 60:
				// Excel counts 1900 as a leap year: before its false
				// February 29th, serials are one day ahead.
				d = time.Date(1899, 12, 31, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
			default:
				d = time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days)
			}
			// The wall-clock date and time in the zone, whatever its
			// offset that day.
			t := time.Date(d.Year(), d.Month(), d.Day(), secs/3600, secs/60%60, secs%60, 0, zone)
			return t, secs == 0, nil
		}
	}
	s = strings.TrimSuffix(strings.TrimSuffix(s, "."), " ")
	for _, l := range dateOnlyLayouts {
		if t, err := time.ParseInLocation(l, s, zone); err == nil {
			return t, true, nil
		}
	}
	for _, l := range dateLayouts {
		if t, err := time.ParseInLocation(l, s, zone); err == nil {
			return t, false, nil
		}
	}
	return time.Time{}, false, fmt.Errorf("%q is not a date: write it as 2026-11-20, 2026.11.20, 20261120, or with a time, 2026-11-20 14:30", s)
}

// partyOf reads a company ID: a business registration number (dashes
// allowed, check digit verified) is kr-brn, anything else a vendor code,
// unless scheme says otherwise.
func partyOf(id, scheme string) (map[string]any, error) {
	id = strings.TrimSpace(id)
	scheme = strings.ToLower(strings.TrimSpace(scheme))
	digits := strings.Map(func(r rune) rune {
		if r == '-' || unicode.IsSpace(r) {
			return -1
		}
		return r
	}, id)
	switch {
	case scheme == "" && len(digits) == 10 && protocol.ValidBRN(digits):
		return map[string]any{"scheme": "kr-brn", "id": digits}, nil
	case scheme == "" && len(digits) == 10 && strings.Trim(digits, "0123456789") == "":
		return nil, fmt.Errorf("%q is not a valid business registration number (its check digit is wrong)", id)
	case scheme == "":
		return map[string]any{"scheme": "vendor", "id": id}, nil
	case scheme == "kr-brn" || scheme == "brn" || scheme == "사업자번호":
		if !protocol.ValidBRN(digits) {
			return nil, fmt.Errorf("%q is not a valid business registration number", id)
		}
		return map[string]any{"scheme": "kr-brn", "id": digits}, nil
	}
	return map[string]any{"scheme": scheme, "id": id}, nil
}
