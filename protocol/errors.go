package protocol

import "errors"

// ErrMalformed is returned for bytes that are not a well-formed record: not
// canonical DAG-CBOR, a missing or unknown field, a value of the wrong type.
var ErrMalformed = errors.New("malformed record")

// ErrTooLarge is returned for a record or envelope beyond MaxRecordSize or
// MaxEnvelopeSize.
var ErrTooLarge = errors.New("too large")

// ErrBadEnvelope is returned for an envelope that does not parse, is not in
// its canonical form, or has the wrong domain or payload type.
var ErrBadEnvelope = errors.New("bad envelope")

// ErrBadSignature is returned when an envelope's signature does not verify.
var ErrBadSignature = errors.New("bad signature")

// ErrAuthorMismatch is returned when the key that signed an envelope is not
// the record's author.
var ErrAuthorMismatch = errors.New("signing key is not the record's author")

// ErrChain is returned when a record cannot follow another in an author's
// chain: wrong channel, author, seq or prev link.
var ErrChain = errors.New("chain rule broken")

// ErrNotFork is returned when two records offered as fork evidence do not
// prove equivocation.
var ErrNotFork = errors.New("not fork evidence")

// ErrUnknownKind is returned for a record kind this package has no schema
// for. It is wrapped with the kind's name.
var ErrUnknownKind = errors.New("unknown kind")

// ErrInvalidBody matches, with errors.Is, every *BodyError: a body that
// breaks its kind's schema or one of the rules the schema cannot express.
var ErrInvalidBody = errors.New("invalid body")
