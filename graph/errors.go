package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"crmsync/auth"
	"crmsync/store"
)

// Error codes of extensions.code that this package sets; gqlgen sets its own
// (GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, COMPLEXITY_LIMIT_EXCEEDED,
// PERSISTED_QUERY_NOT_FOUND).
const (
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
	CodeNotFound        = "NOT_FOUND"
	CodeBadUserInput    = "BAD_USER_INPUT"
	CodeConflict        = "CONFLICT"
	CodeTooComplex      = "TOO_COMPLEX"
	CodeInternal        = "INTERNAL"
)

// Error is a client-safe API error: its message and code are shown as they are.
type Error struct {
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string { return e.Message }

func apiError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// resolverError marks an error that a resolver or a directive returned. gqlgen
// hands the presenter those and its own errors about the client's input (argument
// coercion) alike, wrapped in a *gqlerror.Error; the mark tells them apart.
type resolverError struct{ err error }

func (e resolverError) Error() string { return e.err.Error() }
func (e resolverError) Unwrap() error { return e.err }

// markResolverErrors is the field middleware that marks what resolvers return as
// theirs (resolverError).
func markResolverErrors(ctx context.Context, next graphql.Resolver) (any, error) {
	res, err := next(ctx)
	if err != nil {
		err = resolverError{err}
	}
	return res, err
}

// errorPresenter turns errors into the contract's extensions.code values. Errors it
// does not know are logged once and answered as INTERNAL with no detail, so no
// internals leak.
func errorPresenter(logger *slog.Logger, timeout time.Duration) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		var fromResolver resolverError
		var direct *gqlerror.Error
		isGQL := !errors.As(err, &fromResolver) && errors.As(err, &direct)
		gerr := graphql.DefaultErrorPresenter(ctx, err)

		var apiErr *Error
		var invalid *store.InvalidError
		var conflict *store.ConflictError
		switch {
		case errors.As(err, &apiErr):
			return present(gerr, apiErr.Code, apiErr.Message, apiErr.Field)
		case errors.As(err, &invalid):
			return present(gerr, CodeBadUserInput, invalid.Error(), invalid.Field)
		case errors.Is(err, store.ErrNotFound):
			return present(gerr, CodeNotFound, "not found", "")
		case errors.As(err, &conflict):
			return present(gerr, CodeConflict, conflict.Error(), conflict.Field)
		case errors.Is(err, store.ErrConflict):
			return present(gerr, CodeConflict, "conflict", "")
		case errors.Is(err, context.DeadlineExceeded):
			return present(gerr, CodeInternal, fmt.Sprintf("the request did not finish within %s and was stopped", timeout), "")
		}
		if _, ok := gerr.Extensions["code"]; ok {
			return gerr
		}
		if isGQL {
			// gqlgen's own argument and input coercion errors: the client's input.
			return present(gerr, CodeBadUserInput, gerr.Message, "")
		}
		logger.ErrorContext(ctx, "graphql resolver failed", slog.String("error", err.Error()), slog.Any("path", gerr.Path))
		return present(gerr, CodeInternal, "internal error", "")
	}
}

func present(gerr *gqlerror.Error, code, msg, field string) *gqlerror.Error {
	out := &gqlerror.Error{Message: msg, Path: gerr.Path, Locations: gerr.Locations, Extensions: map[string]any{"code": code}}
	if field != "" {
		out.Extensions["field"] = field
	}
	return out
}

// recoverFunc answers a panicking resolver with INTERNAL and logs the panic.
func recoverFunc(logger *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "graphql resolver panicked", slog.Any("panic", p))
		return apiError(CodeInternal, "internal error")
	}
}

// caller returns the authenticated caller; @hasRole has already ensured there is one.
func caller(ctx context.Context) (*auth.Caller, error) {
	c := auth.CallerFrom(ctx)
	if c == nil {
		return nil, unauthenticated(ctx)
	}
	return c, nil
}

func unauthenticated(ctx context.Context) error {
	if err := auth.ErrorFrom(ctx); err != nil {
		return apiError(CodeUnauthenticated, "%v", err)
	}
	return apiError(CodeUnauthenticated, "a bearer token is required")
}
