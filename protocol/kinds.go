package protocol

import (
	"bytes"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dlclark/regexp2"
	"github.com/ipfs/go-cid"
	"github.com/santhosh-tekuri/jsonschema/v6"
	jskind "github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Business kinds (docs/design.md, "Kinds"). The governance kinds are
// KindChannelGenesis, KindChannelMembers and KindProfile.
const (
	// KindOrder is a purchase order (발주).
	KindOrder = "order"
	// KindOrderResponse is the seller's answer to an order (발주확인/납기회신).
	KindOrderResponse = "order-response"
	// KindOrderChange is a full replacement of an order, or its cancellation
	// (발주변경/취소).
	KindOrderChange = "order-change"
	// KindForecast is a delivery schedule (소요계획/납입지시).
	KindForecast = "forecast"
	// KindDespatchAdvice is a shipping notice (납품서/출하).
	KindDespatchAdvice = "despatch-advice"
	// KindReceipt is a goods receipt (입고/검수).
	KindReceipt = "receipt"
	// KindProductionReport is a production result (생산실적).
	KindProductionReport = "production-report"
	// KindQualityInspection is an inspection result (검사성적서).
	KindQualityInspection = "quality-inspection"
	// KindInventory is the stock of a part at a site (재고).
	KindInventory = "inventory"
	// KindCarbonFootprint is a product carbon footprint (탄소발자국).
	KindCarbonFootprint = "carbon-footprint"
	// KindEPCISEvent is one GS1 EPCIS 2.0 event.
	KindEPCISEvent = "epcis-event"
	// KindNote is free text between partners.
	KindNote = "note"
)

// SchemaBaseURL prefixes the $id of every schema: a kind's schema is
// SchemaBaseURL + kind + "/" + version + ".json", the shared shapes are under
// SchemaDefsID.
const SchemaBaseURL = "https://sangsaeng.dev/schemas/"

// SchemaDefsID is the $id of the schema of shared shapes (Party, Location,
// Item, Quantity, decimal strings, timestamps …) that the kinds' schemas
// $ref. Publish it next to them: SchemaDefs returns it.
const SchemaDefsID = SchemaBaseURL + "defs/1.json"

// schemaVersion is the version in the $id of every current schema.
const schemaVersion = 1

//go:embed schemas/*.json
var schemaFiles embed.FS

// schemaSet is every embedded schema, loaded and compiled once.
type schemaSet struct {
	kinds    []string                      // sorted
	raw      map[string][]byte             // kind → schema file
	defs     []byte                        // defs.json
	compiled map[string]*jsonschema.Schema // kind → compiled schema
	err      error                         // why loading or compiling failed
}

var (
	schemasOnce sync.Once
	schemas     *schemaSet
)

// loadedSchemas returns the embedded schemas, loading and compiling them on
// first use. A failure is kept in the set's err; raw files stay usable.
func loadedSchemas() *schemaSet {
	schemasOnce.Do(func() { schemas = loadSchemas() })
	return schemas
}

func loadSchemas() *schemaSet {
	s := &schemaSet{raw: map[string][]byte{}, compiled: map[string]*jsonschema.Schema{}}
	entries, err := schemaFiles.ReadDir("schemas")
	if err != nil {
		s.err = fmt.Errorf("read embedded schemas: %w", err)
		return s
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseRegexpEngine(ecmaScriptRegexp)
	c.UseLoader(noLoader{})
	for _, e := range entries {
		file := e.Name()
		raw, err := schemaFiles.ReadFile("schemas/" + file)
		if err != nil {
			s.err = fmt.Errorf("read schema %s: %w", file, err)
			return s
		}
		name := strings.TrimSuffix(file, path.Ext(file))
		id := SchemaDefsID
		if name == "defs" {
			s.defs = raw
		} else {
			id = fmt.Sprintf("%s%s/%d.json", SchemaBaseURL, name, schemaVersion)
			s.kinds = append(s.kinds, name)
			s.raw[name] = raw
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			s.err = fmt.Errorf("parse schema %s: %w", file, err)
			return s
		}
		if m, ok := doc.(map[string]any); !ok || m["$id"] != id {
			s.err = fmt.Errorf("schema %s: $id must be %q", file, id)
			return s
		}
		if err := c.AddResource(id, doc); err != nil {
			s.err = fmt.Errorf("add schema %s: %w", file, err)
			return s
		}
	}
	slices.Sort(s.kinds)
	if s.defs == nil {
		s.err = fmt.Errorf("schema defs.json is missing")
		return s
	}
	for _, k := range s.kinds {
		sch, err := c.Compile(fmt.Sprintf("%s%s/%d.json", SchemaBaseURL, k, schemaVersion))
		if err != nil {
			s.err = fmt.Errorf("compile schema %s: %w", k, err)
			return s
		}
		s.compiled[k] = sch
	}
	return s
}

// noLoader refuses to load any schema that is not embedded: validation never
// touches the network or the disk.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema %s is not embedded", url)
}

// ecmaRegexp adapts regexp2 to the schema compiler. JSON Schema patterns are
// ECMAScript regular expressions, which Go's regexp does not fully support.
// regexp2 backtracks, but the embedded patterns are anchored and have no
// nested quantifiers, so a match is linear in the input; no match timeout is
// set, which would start regexp2's background clock goroutine.
type ecmaRegexp regexp2.Regexp

func (re *ecmaRegexp) MatchString(s string) bool {
	ok, err := (*regexp2.Regexp)(re).MatchString(s)
	return err == nil && ok
}

func (re *ecmaRegexp) String() string { return (*regexp2.Regexp)(re).String() }

func ecmaScriptRegexp(s string) (jsonschema.Regexp, error) {
	re, err := regexp2.Compile(s, regexp2.ECMAScript)
	if err != nil {
		return nil, err
	}
	return (*ecmaRegexp)(re), nil
}

// Kinds returns the name of every kind with a schema, business and
// governance, sorted.
func Kinds() []string {
	return slices.Clone(loadedSchemas().kinds)
}

// KnownKind reports whether kind has a schema.
func KnownKind(kind string) bool {
	_, ok := loadedSchemas().raw[kind]
	return ok
}

// Schema returns a copy of the JSON Schema (draft 2020-12) of kind as its raw
// bytes, for publishing. Its shared shapes are in SchemaDefs. ok is false for
// an unknown kind.
func Schema(kind string) (schema []byte, ok bool) {
	b, ok := loadedSchemas().raw[kind]
	return slices.Clone(b), ok
}

// SchemaDefs returns a copy of the raw bytes of the schema of shared shapes,
// whose $id is SchemaDefsID.
func SchemaDefs() []byte {
	return slices.Clone(loadedSchemas().defs)
}

// FieldError is one broken rule at one place in a body.
type FieldError struct {
	// Field is the path to the value, JSON-pointer style without the leading
	// slash ("lines/0/quantity/value"); empty for the body itself. For a
	// missing field it is the object that lacks it; for an unknown field, the
	// unknown field itself.
	Field string
	// Rule names what was broken: the schema keyword and its particulars
	// (`required: missing "docId"`, `pattern: ^[0-9]{10}$`,
	// `type: want string, got number`) or a rule beyond the schema
	// (`brn: check digit`).
	Rule string
	// Message says the same for people: `must be a decimal string like "350.5"`.
	Message string
}

// String returns "field: message", or the message alone for the root.
func (e FieldError) String() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// BodyError says why a body does not fit its kind. Field, Rule and Message
// describe the most specific cause (the deepest in the body); Causes holds
// every cause found, that one first. It matches ErrInvalidBody with
// errors.Is.
type BodyError struct {
	// Kind is the record kind whose schema the body broke.
	Kind string
	// Field is the path of the main cause; see FieldError.Field.
	Field string
	// Rule is the rule of the main cause; see FieldError.Rule.
	Rule string
	// Message is the main cause for people; see FieldError.Message.
	Message string
	// Causes are all the causes found, the main one first.
	Causes []FieldError
}

// Error returns "<kind> body: <field>: <message>", with a count of any
// further causes.
func (e *BodyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind)
	b.WriteString(" body: ")
	b.WriteString(FieldError{Field: e.Field, Message: e.Message}.String())
	if n := len(e.Causes) - 1; n == 1 {
		b.WriteString(" (and 1 more problem)")
	} else if n > 1 {
		fmt.Fprintf(&b, " (and %d more problems)", n)
	}
	return b.String()
}

// Is reports whether target is ErrInvalidBody.
func (e *BodyError) Is(target error) bool { return target == ErrInvalidBody }

// newBodyError builds a BodyError from causes, which must not be empty: the
// deepest cause becomes the main one.
func newBodyError(kind string, causes []FieldError) *BodyError {
	slices.SortStableFunc(causes, func(a, b FieldError) int {
		if da, db := fieldDepth(a.Field), fieldDepth(b.Field); da != db {
			return db - da
		}
		if c := strings.Compare(a.Field, b.Field); c != 0 {
			return c
		}
		return strings.Compare(a.Rule, b.Rule)
	})
	causes = slices.CompactFunc(causes, func(a, b FieldError) bool { return a == b })
	return &BodyError{Kind: kind, Field: causes[0].Field, Rule: causes[0].Rule, Message: causes[0].Message, Causes: causes}
}

func fieldDepth(f string) int {
	if f == "" {
		return 0
	}
	return strings.Count(f, "/") + 1
}

// ValidateBody checks body against the schema of kind, and then against the
// rules a schema cannot express: the check digit of every 사업자등록번호 (a
// Party with scheme kr-brn anywhere in the body, profile.brn), time spans that
// do not end before they start, and integers that are int64 rather than
// integral floats (outside the open parts of epcis-event and
// carbon-footprint). Rules a schema can express, such as an order-response
// with responseCode changed needing lines, are in the published schema. It
// returns nil, an error wrapping ErrUnknownKind, or a *BodyError.
//
// body is in the package's value model. Values of type nil, bool, int64,
// float64 (not NaN or infinite), string, []any and map[string]any are
// validated as their JSON counterparts; int, []string and []map[string]any,
// which the encoder also takes, are read as int64 and []any. []byte and
// cid.Cid values are rejected wherever they appear, even in the open parts of
// epcis-event and carbon-footprint: a JSON body (ParseBody) cannot hold them,
// their DAG-JSON form would not read back as the same value, and references
// between records belong in the record's links. A CID inside a body, such as
// a note's attachment, is a string. Nesting beyond MaxDepth is rejected.
func ValidateBody(kind string, body map[string]any) error {
	s := loadedSchemas()
	if s.err != nil {
		return fmt.Errorf("validate %s body: %w", kind, s.err)
	}
	if _, ok := s.raw[kind]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownKind, kind)
	}
	v, _, fe := jsonValue(body, nil, 0)
	if fe != nil {
		return newBodyError(kind, []FieldError{*fe})
	}
	if err := s.compiled[kind].Validate(v); err != nil {
		verr, ok := err.(*jsonschema.ValidationError)
		if !ok {
			return fmt.Errorf("validate %s body: %w", kind, err)
		}
		var causes []FieldError
		collectCauses(verr, &causes)
		if len(causes) == 0 {
			causes = []FieldError{{Rule: "schema", Message: verr.Error()}}
		}
		return newBodyError(kind, causes)
	}
	if causes := semanticCheck(kind, v.(map[string]any)); len(causes) > 0 {
		return newBodyError(kind, causes)
	}
	return nil
}

// jsonValue returns v as the schema library wants it (see ValidateBody), and
// whether that differs from v, or the reason v cannot be validated. It copies
// only the containers it must change.
func jsonValue(v any, at []string, depth int) (any, bool, *FieldError) {
	if depth > MaxDepth+1 {
		return nil, false, &FieldError{Field: pointer(at), Rule: "depth", Message: fmt.Sprintf("is nested deeper than %d levels", MaxDepth)}
	}
	switch v := v.(type) {
	case nil, bool, int64, string:
		return v, false, nil
	case int:
		return int64(v), true, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, false, &FieldError{Field: pointer(at), Rule: "type: NaN or infinity", Message: "must be a finite number"}
		}
		return v, false, nil
	case []byte:
		return nil, false, &FieldError{Field: pointer(at), Rule: "type: bytes are not allowed in a body", Message: "must not be a byte string"}
	case cid.Cid:
		return nil, false, &FieldError{Field: pointer(at), Rule: "type: links are not allowed in a body", Message: "must not be a link; write a CID as a string, or put the reference in the record's links"}
	case []string:
		l := make([]any, len(v))
		for i, s := range v {
			l[i] = s
		}
		return l, true, nil
	case []map[string]any:
		l := make([]any, len(v))
		for i, m := range v {
			l[i] = m
		}
		out, _, fe := jsonValue(l, at, depth)
		return out, true, fe
	case []any:
		var out []any
		for i, e := range v {
			ev, changed, fe := jsonValue(e, append(at, strconv.Itoa(i)), depth+1)
			if fe != nil {
				return nil, false, fe
			}
			if changed && out == nil {
				out = slices.Clone(v)
			}
			if out != nil {
				out[i] = ev
			}
		}
		if out == nil {
			return v, false, nil
		}
		return out, true, nil
	case map[string]any:
		var out map[string]any
		for k, e := range v {
			ev, changed, fe := jsonValue(e, append(at, k), depth+1)
			if fe != nil {
				return nil, false, fe
			}
			if changed && out == nil {
				out = maps.Clone(v)
			}
			if out != nil {
				out[k] = ev
			}
		}
		if out == nil {
			if v == nil {
				return map[string]any{}, true, nil
			}
			return v, false, nil
		}
		return out, true, nil
	default:
		return nil, false, &FieldError{Field: pointer(at), Rule: fmt.Sprintf("type: unsupported value type %T", v), Message: fmt.Sprintf("holds a value of type %T, which a record cannot", v)}
	}
}

// pointer renders a path as a JSON pointer without the leading slash.
func pointer(at []string) string {
	if len(at) == 0 {
		return ""
	}
	esc := make([]string, len(at))
	for i, t := range at {
		t = strings.ReplaceAll(t, "~", "~0")
		esc[i] = strings.ReplaceAll(t, "/", "~1")
	}
	return strings.Join(esc, "/")
}

// printer renders the schema library's own descriptions of errors.
var printer = message.NewPrinter(language.English)

// defsPrefix starts the location of every shared shape in error reports.
var defsPrefix = SchemaDefsID + "#/$defs/"

// defMessages say what a value of a shared shape must be, for people.
var defMessages = map[string]string{
	"decimal":            `must be a decimal string like "350.5"`,
	"nonNegativeDecimal": `must be a decimal string like "350.5"`,
	"dateTime":           `must be an RFC 3339 date-time with an offset like "2025-03-04T09:30:00+09:00"`,
	"date":               `must be a date like "2025-03-04"`,
	"code":               "must be 1 to 64 characters, without control characters or leading or trailing spaces",
	"lineId":             `must be a line number as a string like "10", 1 to 32 characters`,
	"shortText":          "must be a string of 1 to 200 characters",
	"text":               "must be a string of at most 4000 characters",
	"docVersion":         "must be an integer ≥ 1",
	"brn":                "must be a 사업자등록번호 of 10 digits without dashes",
	"peerId":             `must be a libp2p peer ID like "12D3KooW…"`,
	"cid":                `must be a CID string like "bafy…"`,
	"unit":               `must be a UN/ECE Rec 20 unit code like "H87" or "KGM"`,
	"currency":           `must be an ISO 4217 currency code like "KRW"`,
	"mediaType":          `must be a media type like "application/pdf"`,
	"fileName":           "must be a file name of 1 to 255 characters, without a directory",
	"sha256":             "must be a SHA-256 digest in lowercase hex (64 characters)",
	"gln":                "must be a GLN of 13 digits",
	"duns":               "must be a D-U-N-S number of 9 digits",
	"bpnl":               `must be a Catena-X BPNL like "BPNL00000003AYRE"`,
	"bpns":               `must be a Catena-X BPNS like "BPNS000000000001"`,
	"url":                "must be an http or https URL",
	"incoterm":           "must be an Incoterms rule like FOB or DAP",
	"requestedDelivery":  "must have either date, or start and end",
}

// defName returns the shared shape a schema location is in, or "".
func defName(schemaURL string) string {
	rest, ok := strings.CutPrefix(schemaURL, defsPrefix)
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// collectCauses appends to out one FieldError for every leaf of the schema
// library's error tree. An anyOf or oneOf whose alternatives all fail at its
// own place in the body counts as one leaf: "needs one of …" says more than
// each alternative's complaint.
func collectCauses(e *jsonschema.ValidationError, out *[]FieldError) {
	switch k := e.ErrorKind.(type) {
	case *jskind.Schema, *jskind.Group, *jskind.AllOf, *jskind.Reference:
		for _, c := range e.Causes {
			collectCauses(c, out)
		}
		return
	case *jskind.AnyOf, *jskind.OneOf:
		if o, ok := k.(*jskind.OneOf); ok && o.Subschemas != nil {
			break // more than one alternative matched: a leaf
		}
		here := len(e.InstanceLocation)
		var sub []FieldError
		for _, c := range e.Causes {
			collectCauses(c, &sub)
		}
		shallow := true
		for _, c := range e.Causes {
			if maxDepth(c) > here {
				shallow = false
			}
		}
		if !shallow {
			*out = append(*out, sub...)
			return
		}
		*out = append(*out, alternativesError(e, sub))
		return
	}
	*out = append(*out, leafErrors(e)...)
}

// maxDepth is the deepest instance location in an error tree.
func maxDepth(e *jsonschema.ValidationError) int {
	d := len(e.InstanceLocation)
	for _, c := range e.Causes {
		d = max(d, maxDepth(c))
	}
	return d
}

// alternativesError describes an anyOf or oneOf none of whose alternatives
// matched, from the complaints of its alternatives.
func alternativesError(e *jsonschema.ValidationError, sub []FieldError) FieldError {
	fe := FieldError{Field: pointer(e.InstanceLocation)}
	kw := "anyOf"
	if _, ok := e.ErrorKind.(*jskind.OneOf); ok {
		kw = "oneOf"
	}
	var missing []string
	for _, c := range e.Causes {
		if names, ok := requiredOnly(c); ok {
			missing = append(missing, strings.Join(quoteAll(names), " and "))
		} else {
			missing = nil
			break
		}
	}
	switch {
	case defMessages[defName(e.SchemaURL)] != "":
		fe.Message = defMessages[defName(e.SchemaURL)]
	case len(missing) > 0:
		fe.Message = "needs one of " + strings.Join(missing, ", ")
	default:
		parts := make([]string, len(sub))
		for i, s := range sub {
			parts[i] = s.String()
		}
		fe.Message = "matches none of the alternatives: " + strings.Join(parts, "; ")
	}
	if len(missing) > 0 {
		fe.Rule = kw + ": missing one of " + strings.Join(missing, ", ")
	} else {
		fe.Rule = kw + ": no alternative matched"
	}
	return fe
}

// requiredOnly returns the property names an error tree says are missing, if
// that is all it says.
func requiredOnly(e *jsonschema.ValidationError) ([]string, bool) {
	switch k := e.ErrorKind.(type) {
	case *jskind.Required:
		return k.Missing, true
	case *jskind.Schema, *jskind.Group, *jskind.AllOf, *jskind.Reference:
		var names []string
		for _, c := range e.Causes {
			n, ok := requiredOnly(c)
			if !ok {
				return nil, false
			}
			names = append(names, n...)
		}
		return names, len(names) > 0
	}
	return nil, false
}

func quoteAll(names []string) []string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return q
}

// leafErrors turns one leaf of the schema library's error tree into
// FieldErrors: usually one, one per property for unknown properties.
func leafErrors(e *jsonschema.ValidationError) []FieldError {
	at := e.InstanceLocation
	fe := FieldError{Field: pointer(at)}
	msg := defMessages[defName(e.SchemaURL)]
	switch k := e.ErrorKind.(type) {
	case *jskind.Required:
		q := strings.Join(quoteAll(k.Missing), ", ")
		fe.Rule = "required: missing " + q
		if len(k.Missing) == 1 {
			fe.Message = "missing required field " + q
		} else {
			fe.Message = "missing required fields " + q
		}
		return []FieldError{fe}
	case *jskind.AdditionalProperties:
		out := make([]FieldError, 0, len(k.Properties))
		for _, p := range k.Properties {
			out = append(out, FieldError{
				Field:   pointer(append(slices.Clip(at), p)),
				Rule:    fmt.Sprintf("additionalProperties: %q not allowed", p),
				Message: "unknown field",
			})
		}
		return out
	case *jskind.FalseSchema:
		// A property whose schema is false: a field another kind has
		// (an order line's lineAction) but this one must not.
		fe.Rule = "false schema: not allowed"
		if len(at) > 0 {
			fe.Rule = fmt.Sprintf("properties: %q not allowed", at[len(at)-1])
		}
		fe.Message = "is not allowed here"
		return []FieldError{fe}
	case *jskind.Type:
		fe.Rule = fmt.Sprintf("type: want %s, got %s", strings.Join(k.Want, " or "), k.Got)
		if msg == "" {
			msg = "must be " + article(strings.Join(k.Want, " or "))
		}
	case *jskind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			b, _ := json.Marshal(w)
			want[i] = string(b)
		}
		fe.Rule = "enum: want one of " + strings.Join(want, ", ")
		if msg == "" {
			msg = "must be one of " + strings.Join(want, ", ")
		}
	case *jskind.Pattern:
		fe.Rule = "pattern: " + k.Want
		if defName(e.SchemaURL) == "nonNegativeDecimal" && strings.HasPrefix(k.Got, "-") {
			msg = `must not be negative`
		}
		if msg == "" {
			msg = "must match " + k.Want
		}
	case *jskind.Format:
		fe.Rule = fmt.Sprintf("format: not a valid %s: %v", k.Want, k.Err)
		if msg == "" {
			msg = "must be a valid " + k.Want
		}
	case *jskind.MinLength:
		fe.Rule = fmt.Sprintf("minLength: %d < %d", k.Got, k.Want)
		if msg == "" {
			if k.Want == 1 {
				msg = "must not be empty"
			} else {
				msg = fmt.Sprintf("must be at least %d characters", k.Want)
			}
		}
	case *jskind.MaxLength:
		fe.Rule = fmt.Sprintf("maxLength: %d > %d", k.Got, k.Want)
		msg = fmt.Sprintf("must be at most %d characters", k.Want)
	case *jskind.MinItems:
		fe.Rule = fmt.Sprintf("minItems: %d < %d", k.Got, k.Want)
		if k.Want == 1 {
			msg = "must not be empty"
		} else {
			msg = fmt.Sprintf("must have at least %d items", k.Want)
		}
	case *jskind.MaxItems:
		fe.Rule = fmt.Sprintf("maxItems: %d > %d", k.Got, k.Want)
		msg = fmt.Sprintf("must have at most %d items", k.Want)
	case *jskind.MinProperties:
		fe.Rule = fmt.Sprintf("minProperties: %d < %d", k.Got, k.Want)
		msg = "must not be empty"
	case *jskind.Minimum:
		fe.Rule = fmt.Sprintf("minimum: %s < %s", k.Got.RatString(), k.Want.RatString())
		if msg == "" {
			msg = "must be ≥ " + k.Want.RatString()
		}
	case *jskind.Maximum:
		fe.Rule = fmt.Sprintf("maximum: %s > %s", k.Got.RatString(), k.Want.RatString())
		if msg == "" {
			msg = "must be ≤ " + k.Want.RatString()
		}
	case *jskind.UniqueItems:
		fe.Rule = fmt.Sprintf("uniqueItems: items %d and %d are equal", k.Duplicates[0], k.Duplicates[1])
		msg = fmt.Sprintf("must not repeat an item (items %d and %d are equal)", k.Duplicates[0], k.Duplicates[1])
	default:
		kw := "schema"
		if p := e.ErrorKind.KeywordPath(); len(p) > 0 {
			kw = p[0]
		}
		desc := e.ErrorKind.LocalizedString(printer)
		fe.Rule = kw + ": " + desc
		if msg == "" {
			msg = desc
		}
	}
	fe.Message = msg
	return []FieldError{fe}
}

// article puts "a" or "an" before a JSON type name.
func article(t string) string {
	if t != "" && strings.ContainsRune("aeiou", rune(t[0])) {
		return "an " + t
	}
	return "a " + t
}

// semanticCheck applies the rules a schema cannot express to a body that
// passed its schema.
// KindDisclosure passes another company's signed record to a channel.
const KindDisclosure = "disclosure"

// Disclosed opens the record a disclosure body carries: its signature and
// CID checked, its author's terms allowing disclosure, not a channel's
// governance.
func Disclosed(body map[string]any) (*Signed, error) {
	orig, _ := body["original"].(string)
	want, _ := body["cid"].(string)
	env, err := base64.RawURLEncoding.DecodeString(orig)
	if err != nil {
		return nil, fmt.Errorf("the original is not base64url: %v", err)
	}
	s, err := Open(env)
	if err != nil {
		return nil, fmt.Errorf("the original does not verify: %w", err)
	}
	if s.CID.String() != want {
		return nil, fmt.Errorf("the original is record %s, not %s as cid says", s.CID, want)
	}
	switch s.Record.Kind {
	case KindChannelGenesis, KindChannelMembers, KindProfile:
		return nil, fmt.Errorf("a channel's governance (%s) is not disclosed", s.Record.Kind)
	case KindDisclosure:
		// Its original's terms would go unchecked one level down.
		return nil, fmt.Errorf("a disclosure is not disclosed again: disclose the record it carries, %v", s.Record.Body["cid"])
	}
	if err := ValidateBody(s.Record.Kind, s.Record.Body); err != nil {
		return nil, fmt.Errorf("the original breaks its kind's schema: %w", err)
	}
	if terms, ok := s.Record.Body["terms"].(map[string]any); ok && terms["disclose"] == false {
		return nil, fmt.Errorf("%w: the author of %s forbids disclosing it (terms: disclose false)", ErrDisclosureForbidden, s.CID)
	}
	return s, nil
}

// ErrDisclosureForbidden: the record's author forbids passing it on.
var ErrDisclosureForbidden = errors.New("disclosure forbidden")

func semanticCheck(kind string, body map[string]any) []FieldError {
	var out []FieldError
	switch kind {
	case KindEPCISEvent:
		return nil // GS1's shape, not ours: no parties to check
	case KindDisclosure:
		if _, err := Disclosed(body); err != nil {
			out = append(out, FieldError{Field: "original", Rule: "disclosure", Message: err.Error()})
		}
	case KindProfile:
		if brn, ok := body["brn"].(string); ok && !ValidBRN(brn) {
			out = append(out, brnError([]string{"brn"}))
		}
	case KindOrder, KindOrderChange:
		if lines, ok := body["lines"].([]any); ok {
			for i, l := range lines {
				if l, ok := l.(map[string]any); ok {
					if rd, ok := l["requestedDelivery"].(map[string]any); ok {
						out = checkSpan(out, rd, "start", "end", []string{"lines", strconv.Itoa(i), "requestedDelivery"})
					}
				}
			}
		}
	case KindForecast:
		if entries, ok := body["entries"].([]any); ok {
			for i, e := range entries {
				if e, ok := e.(map[string]any); ok {
					out = checkSpan(out, e, "periodStart", "periodEnd", []string{"entries", strconv.Itoa(i)})
				}
			}
		}
	case KindProductionReport:
		if p, ok := body["period"].(map[string]any); ok {
			out = checkSpan(out, p, "start", "end", []string{"period"})
		}
	case KindCarbonFootprint:
		out = checkSpan(out, body, "referencePeriodStart", "referencePeriodEnd", nil)
	}
	walkBody(body, nil, kind == KindCarbonFootprint, &out)
	return out
}

// walkBody appends a FieldError for every Party under v whose scheme is
// kr-brn and whose ID fails the check digit, and for every float64. Locations
// cannot have that scheme, so any object with it is a Party. Every number in
// the schemas of our own kinds is an integer, so a float64 that passed them is
// an integral float where an int64 belongs: it would encode as a CBOR float
// and surprise every reader. skipOriginal leaves out the top-level "original"
// (a carbon footprint's foreign document).
func walkBody(v any, at []string, skipOriginal bool, out *[]FieldError) {
	switch v := v.(type) {
	case float64:
		*out = append(*out, FieldError{
			Field:   pointer(at),
			Rule:    "type: want integer, got float",
			Message: "must be an integer without a decimal point",
		})
	case map[string]any:
		if v["scheme"] == "kr-brn" {
			if id, ok := v["id"].(string); ok && !ValidBRN(id) {
				*out = append(*out, brnError(append(slices.Clip(at), "id")))
			}
		}
		for k, e := range v {
			if skipOriginal && len(at) == 0 && k == "original" {
				continue
			}
			walkBody(e, append(at, k), false, out)
		}
	case []any:
		for i, e := range v {
			walkBody(e, append(at, strconv.Itoa(i)), false, out)
		}
	}
}

func brnError(at []string) FieldError {
	return FieldError{
		Field:   pointer(at),
		Rule:    "brn: check digit",
		Message: "is not a valid 사업자등록번호: the check digit does not match",
	}
}

// checkSpan appends a FieldError when m[endKey] is before m[startKey]. Both
// are dates or RFC 3339 date-times, as the schema made sure.
func checkSpan(out []FieldError, m map[string]any, startKey, endKey string, at []string) []FieldError {
	s, ok1 := m[startKey].(string)
	e, ok2 := m[endKey].(string)
	if !ok1 || !ok2 {
		return out
	}
	st, err1 := parseTimeOrDate(s)
	et, err2 := parseTimeOrDate(e)
	if err1 != nil || err2 != nil || !et.Before(st) {
		return out
	}
	return append(out, FieldError{
		Field:   pointer(append(slices.Clip(at), endKey)),
		Rule:    fmt.Sprintf("span: %s before %s", endKey, startKey),
		Message: fmt.Sprintf("must not be before %s (%s)", startKey, s),
	})
}

func parseTimeOrDate(s string) (time.Time, error) {
	if len(s) == len("2006-01-02") {
		return time.Parse(time.DateOnly, s)
	}
	return time.Parse(time.RFC3339Nano, s)
}
