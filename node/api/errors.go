package api

import (
	"errors"
	"fmt"
)

// Error is the body of every failed API call.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the HTTP status; it is not part of the body.
	Status int `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Is matches an *Error against the sentinel of its code.
func (e *Error) Is(target error) bool {
	s, ok := target.(*Error)
	return ok && s.Message == "" && s.Code == e.Code
}

// Error codes, and sentinels to match them with errors.Is.
const (
	CodeBadRequest    = "bad_request"
	CodeInvalidRecord = "invalid_record"
	CodeTooLarge      = "too_large"
	CodeNotFound      = "not_found"
	CodeNotMember     = "not_member"
	CodeNotAdmin      = "not_admin"
	CodeAmbiguous     = "ambiguous"
	CodeUnauthorized  = "unauthorized"
	CodeForbidden     = "forbidden"
	CodeBadHost       = "bad_host"
	CodeUnavailable   = "unavailable"
	CodeStaleEventID  = "stale_event_id"
	CodeInternal      = "internal"
)

var (
	// ErrBadRequest: the request is malformed.
	ErrBadRequest = &Error{Code: CodeBadRequest}
	// ErrInvalidRecord: the record breaks its kind's schema or a record rule.
	ErrInvalidRecord = &Error{Code: CodeInvalidRecord}
	// ErrTooLarge: the request or record is beyond a size limit.
	ErrTooLarge = &Error{Code: CodeTooLarge}
	// ErrNotFound: no such record, channel or partner.
	ErrNotFound = &Error{Code: CodeNotFound}
	// ErrNotMember: the node or the named peer is not a member of the channel.
	ErrNotMember = &Error{Code: CodeNotMember}
	// ErrNotAdmin: only a channel admin may do this.
	ErrNotAdmin = &Error{Code: CodeNotAdmin}
	// ErrAmbiguous: a channel name matches more than one channel.
	ErrAmbiguous = &Error{Code: CodeAmbiguous}
	// ErrUnauthorized: the bearer token is missing or wrong.
	ErrUnauthorized = &Error{Code: CodeUnauthorized}
	// ErrBadHost: the request named the API by a host other than a
	// loopback name or its configured address (421).
	ErrBadHost = &Error{Code: CodeBadHost}
	// ErrUnavailable: the daemon cannot do it now (a partner unreachable, say).
	ErrUnavailable = &Error{Code: CodeUnavailable}
)

// Errorf returns an *Error with the given code, HTTP status and message.
func Errorf(code string, status int, format string, args ...any) *Error {
	return &Error{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// ErrNoDaemon is returned by the client when no daemon answers.
var ErrNoDaemon = errors.New("no daemon is running")
