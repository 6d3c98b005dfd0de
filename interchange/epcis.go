package interchange

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sangsaeng/sangsaeng/protocol"
)

// FormatEPCIS is a GS1 EPCIS 2.0 JSON(-LD) document.
const FormatEPCIS = "epcis"

// maxEPCISEvents bounds the events of one document.
const maxEPCISEvents = 1_000_000

// ReadEPCIS reads a GS1 EPCIS 2.0 document from r as a stream and calls fn
// with each event of its eventList, in order, once the event passed the
// epcis-event kind's checks. Problems with the document (not EPCIS 2.0,
// no eventList) end the read with err; problems with an event are
// collected, up to maxErrors, and that event is not given to fn.
func ReadEPCIS(r io.Reader, file string, fn func(n int, event map[string]any) error) (events int, errs []RowError, err error) {
	dec := json.NewDecoder(r)
	fail := func(format string, args ...any) error {
		return errFile{fmt.Sprintf(format, args...)}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, nil, fail("not a JSON object: an EPCIS document starts with {")
	}
	seen := map[string]bool{}
	nerrs := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return events, errs, fail("not JSON: %v", err)
		}
		key, _ := tok.(string)
		seen[key] = true
		switch key {
		case "epcisBody":
			if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
				return events, errs, fail("epcisBody is not an object")
			}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return events, errs, fail("not JSON: %v", err)
				}
				if tok != "eventList" {
					var skip json.RawMessage
					if err := dec.Decode(&skip); err != nil {
						return events, errs, fail("not JSON: %v", err)
					}
					continue
				}
				seen["eventList"] = true
				if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
					return events, errs, fail("epcisBody.eventList is not an array")
				}
				for dec.More() {
					var raw json.RawMessage
					if err := dec.Decode(&raw); err != nil {
						return events, errs, fail("event %d is not JSON: %v", events+1, err)
					}
					if events++; events > maxEPCISEvents {
						return events, errs, fail("more than %d events", maxEPCISEvents)
					}
					ev, err := protocol.ParseBody(raw)
					if err == nil {
						err = protocol.ValidateBody(protocol.KindEPCISEvent, ev)
					}
					if err != nil {
						nerrs++
						if len(errs) < maxErrors {
							errs = append(errs, eventError(file, events, raw, err))
						}
						continue
					}
					if err := fn(events, ev); err != nil {
						return events, errs, err
					}
				}
				if _, err := dec.Token(); err != nil { // ]
					return events, errs, fail("not JSON: %v", err)
				}
			}
			if _, err := dec.Token(); err != nil { // }
				return events, errs, fail("not JSON: %v", err)
			}
		case "type", "schemaVersion":
			var v string
			if err := dec.Decode(&v); err != nil {
				return events, errs, fail("%s is not a string", key)
			}
			if key == "type" && v != "EPCISDocument" {
				return events, errs, fail("type is %q: want an EPCISDocument (a query document is not imported)", v)
			}
			if key == "schemaVersion" && v != "2.0" {
				return events, errs, fail("schemaVersion is %q: this reads EPCIS 2.0", v)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return events, errs, fail("not JSON: %v", err)
			}
		}
	}
	for _, k := range []string{"@context", "type", "schemaVersion", "creationDate", "eventList"} {
		if !seen[k] {
			return events, errs, fail("not an EPCIS 2.0 document: %s is missing", k)
		}
	}
	return events, errs, nil
}

// eventError says what is wrong with event n.
func eventError(file string, n int, raw json.RawMessage, err error) RowError {
	var head struct {
		Type    string `json:"type"`
		EventID string `json:"eventID"`
	}
	_ = json.Unmarshal(raw, &head)
	e := RowError{File: file, Event: n, Rule: err.Error()}
	var be *protocol.BodyError
	if errors.As(err, &be) {
		e.Column, e.Rule = be.Field, be.Message
		if n := len(be.Causes) - 1; n > 0 {
			e.Rule += fmt.Sprintf(" (and %d more)", n)
		}
	}
	if head.Type != "" {
		e.Value = head.Type
	}
	e.Rule = strings.TrimPrefix(e.Rule, "epcis-event body: ")
	return e
}
