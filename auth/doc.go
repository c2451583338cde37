// Package auth validates and mints the JWTs that callers of the GraphQL API present,
// knows the roles, and carries the authenticated caller in a request's context.
package auth
