package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"crmsync/auth"
	"crmsync/graph/model"
)

// hasRole enforces @hasRole on root fields: no caller is UNAUTHENTICATED, too low a
// role is FORBIDDEN.
func hasRole(ctx context.Context, _ any, next graphql.Resolver, role model.Role) (any, error) {
	c := auth.CallerFrom(ctx)
	if c == nil {
		return nil, unauthenticated(ctx)
	}
	if !c.Can(authRole(role)) {
		return nil, apiError(CodeForbidden, "this needs the %s role", authRole(role))
	}
	return next(ctx)
}

func authRole(r model.Role) auth.Role {
	switch r {
	case model.RoleViewer:
		return auth.RoleViewer
	case model.RoleEditor:
		return auth.RoleEditor
	case model.RoleAdmin:
		return auth.RoleAdmin
	}
	return auth.RoleAdmin + 1 // unknown: nobody
}
