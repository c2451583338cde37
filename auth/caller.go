package auth

import (
	"context"
	"time"
)

// Caller is who made a request: the token's subject, tenant and highest role.
type Caller struct {
	Subject   string
	Tenant    string
	Role      Role
	ExpiresAt time.Time
}

// Can reports whether the caller holds at least role r.
func (c *Caller) Can(r Role) bool { return c != nil && c.Role >= r }

type callerKey struct{}
type authErrKey struct{}

// WithCaller returns a context that carries the authenticated caller.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller of the request, or nil when it is unauthenticated.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// WithError records why a presented token was refused, so the API can say so.
func WithError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, authErrKey{}, err)
}

// ErrorFrom returns why the request's token was refused, if one was presented.
func ErrorFrom(ctx context.Context) error {
	err, _ := ctx.Value(authErrKey{}).(error)
	return err
}
