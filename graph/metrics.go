package graph

import (
	"context"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// Metrics is told how long each GraphQL operation took, by its type (query,
// mutation, subscription) and outcome ("ok", or "error" when the response
// carries errors); metrics.Registry implements it. Operation names are left
// out: clients choose them, so they would make the series unbounded.
type Metrics interface {
	ObserveGraphQL(operationType, outcome string, d time.Duration)
}

// operationMetrics times every operation that passes validation, from the
// moment its request was read. A query or mutation is timed to its response; a
// subscription to its setup, with the outcome of its first response. A request
// refused before execution (unparsable, invalid) is not counted.
type operationMetrics struct{ m Metrics }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = operationMetrics{}

func (operationMetrics) ExtensionName() string                   { return "Metrics" }
func (operationMetrics) Validate(graphql.ExecutableSchema) error { return nil }

func (o operationMetrics) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	start := oc.Stats.OperationStart
	if start.IsZero() {
		start = time.Now()
	}
	typ := string(ast.Query)
	if oc.Operation != nil {
		typ = string(oc.Operation.Operation)
	}
	responses := next(ctx)
	took := time.Since(start)
	var once sync.Once
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		once.Do(func() {
			outcome := "ok"
			if resp != nil && len(resp.Errors) > 0 {
				outcome = "error"
			}
			if typ != string(ast.Subscription) {
				took = time.Since(start)
			}
			o.m.ObserveGraphQL(typ, outcome, took)
		})
		return resp
	}
}
