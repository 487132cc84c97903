package polarway

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors, one per gRPC status code the server uses. Every error a Client returns for a
// failed call is an *Error that matches exactly one of them with errors.Is:
//
//	if errors.Is(err, polarway.ErrNotFound) { ... }
var (
	ErrInvalidArgument   = errors.New("invalid argument")   // bad name, malformed Arrow, bad SQL
	ErrNotFound          = errors.New("not found")          // no such dataset or version
	ErrAlreadyExists     = errors.New("already exists")     // IfAbsent failed
	ErrAborted           = errors.New("aborted")            // IfVersion failed
	ErrUnauthenticated   = errors.New("unauthenticated")    // missing or wrong token
	ErrPermissionDenied  = errors.New("permission denied")  // SQL sandbox, policy
	ErrResourceExhausted = errors.New("resource exhausted") // size or rate limit
	ErrDeadlineExceeded  = errors.New("deadline exceeded")  // the call's deadline passed
	ErrUnavailable       = errors.New("unavailable")        // server down or unreachable; retriable
	ErrCanceled          = errors.New("canceled")           // the caller's context was canceled
	ErrInternal          = errors.New("internal error")     // any other code
)

var sentinels = map[codes.Code]error{
	codes.InvalidArgument:   ErrInvalidArgument,
	codes.NotFound:          ErrNotFound,
	codes.AlreadyExists:     ErrAlreadyExists,
	codes.Aborted:           ErrAborted,
	codes.Unauthenticated:   ErrUnauthenticated,
	codes.PermissionDenied:  ErrPermissionDenied,
	codes.ResourceExhausted: ErrResourceExhausted,
	codes.DeadlineExceeded:  ErrDeadlineExceeded,
	codes.Unavailable:       ErrUnavailable,
	codes.Canceled:          ErrCanceled,
}

// Error is a failed call: the gRPC status code and the server's (or client's) message.
type Error struct {
	// Op is the client method that failed, e.g. "Load".
	Op string
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's explanation (or the client's, for errors caught before sending).
	Message string

	st *status.Status
}

func (e *Error) Error() string {
	return fmt.Sprintf("polarway: %s: %s: %s", e.Op, e.Code, e.Message)
}

// Unwrap returns the sentinel matching Code, so errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error {
	if s, ok := sentinels[e.Code]; ok {
		return s
	}
	return ErrInternal
}

// Is also lets deadline and cancellation errors match the context package's errors.
func (e *Error) Is(target error) bool {
	return (target == context.DeadlineExceeded && e.Code == codes.DeadlineExceeded) ||
		(target == context.Canceled && e.Code == codes.Canceled)
}

// GRPCStatus returns the full status (with any details), so status.FromError and status.Code work.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// wrapErr turns a gRPC (or context) error into an *Error; nil stays nil.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	st := status.Convert(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		st = status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		st = status.New(codes.Canceled, err.Error())
	}
	return &Error{Op: op, Code: st.Code(), Message: st.Message(), st: st}
}

// clientErr is an error found by the client before or after talking to the server.
func clientErr(op string, code codes.Code, format string, args ...any) error {
	st := status.Newf(code, format, args...)
	return &Error{Op: op, Code: code, Message: st.Message(), st: st}
}

func isRetryable(err error) bool { return status.Code(err) == codes.Unavailable }
