// Package graph serves crmsync's GraphQL API: resolvers over the store, scoped to the
// caller's tenant, with role checks on every root field.
package graph

//go:generate sh -c "cd .. && go tool gqlgen generate"

import (
	"crmsync/store"
)

// Resolver holds what resolvers need; it is wiring only.
type Resolver struct {
	Store     *store.Store
	PublicURL string
}
