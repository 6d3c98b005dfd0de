package protocol

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrBadLink is returned for a link its kind's rules do not allow.
var ErrBadLink = errors.New("link not allowed")

// RelSupersedes links a record to an earlier one of the same kind and
// author that it replaces.
const RelSupersedes = "supersedes"

// linkRules say, for the kinds whose links have meaning, which relations
// each takes and what each must point to (docs/design.md, "Links"). A
// kind listed here takes only these rels and supersedes; the others (note,
// epcis-event, forecast, inventory) take any rel.
var linkRules = map[string]map[string][]string{
	KindOrderResponse:     {"responds-to": {KindOrder, KindOrderChange}},
	KindOrderChange:       {},
	KindOrder:             {"calls-off": {KindOrder, KindOrderChange}}, // a call-off names its blanket order
	KindDespatchAdvice:    {"fulfils": {KindOrder, KindOrderChange}, "ships": {KindProductionReport, KindReceipt, KindDespatchAdvice, KindDisclosure}},
	KindReceipt:           {"receives": {KindDespatchAdvice}},
	KindProductionReport:  {"consumes": {KindDespatchAdvice, KindReceipt, KindProductionReport, KindDisclosure}},
	KindQualityInspection: {"inspects": {KindProductionReport, KindDespatchAdvice, KindReceipt, KindDisclosure, KindEPCISEvent}},
	KindDisclosure:        {"discloses": nil},
	KindCarbonFootprint:   {"describes": {KindProductionReport}},
}

// supersedable is which kinds a record of a kind may supersede.
func supersedable(kind string) []string {
	if kind == KindOrderChange || kind == KindOrder {
		return []string{KindOrder, KindOrderChange}
	}
	return []string{kind}
}

// HasLinkRules reports whether kind's links are constrained.
func HasLinkRules(kind string) bool {
	_, ok := linkRules[kind]
	return ok
}

// CheckLinkRel reports whether a record of kind may carry a link with rel.
func CheckLinkRel(kind, rel string) error {
	if rel == RelAfter || rel == RelSupersedes {
		return nil
	}
	rules, strict := linkRules[kind]
	if !strict {
		return nil
	}
	if _, ok := rules[rel]; ok {
		return nil
	}
	var rels []string
	for r := range rules {
		rels = append(rels, r)
	}
	rels = append(rels, RelSupersedes)
	slices.Sort(rels)
	return fmt.Errorf("%w: a %s takes links %s, not %q", ErrBadLink, kind, strings.Join(rels, ", "), rel)
}

// CheckLinkTarget reports whether a record of from's kind and author may
// link target with rel: what the rel must point to, and for supersedes,
// an earlier record of the same kind (an order and its changes are one)
// by the same author.
func CheckLinkTarget(from *Record, rel string, target *Signed) error {
	if err := CheckLinkRel(from.Kind, rel); err != nil {
		return err
	}
	t := target.Record
	if rel == RelSupersedes {
		if !slices.Contains(supersedable(from.Kind), t.Kind) || t.Author != from.Author || (from.Channel.Defined() && target.ChannelOf() != from.Channel) {
			return fmt.Errorf("%w: %s of a %s links an earlier %s that its own author published in the same channel; %s is a %s by %s: link the record you are replacing",
				ErrBadLink, rel, from.Kind, strings.Join(supersedable(from.Kind), " or "), target.CID, t.Kind, t.Author)
		}
		return nil
	}
	want, ok := linkRules[from.Kind][rel]
	if !ok || want == nil || slices.Contains(want, t.Kind) {
		return nil
	}
	return fmt.Errorf("%w: %s of a %s must point to %s; %s is a %s", ErrBadLink, rel, from.Kind, strings.Join(want, " or "), target.CID, t.Kind)
}
