package graph

import (
	"context"
	"net/http"
	"time"

	"github.com/vikstrous/dataloadgen"

	"crmsync/graph/model"
	"crmsync/store"
)

// loaders batch the parent → child hops of one request (subscriber → group, group →
// connection, reaction → subscriber) into one query per hop and remember what they
// loaded, so a page of 500 subscribers costs the same few queries as a page of one.
type loaders struct {
	groups      *dataloadgen.Loader[tenantKey, *store.Group]
	connections *dataloadgen.Loader[tenantKey, *store.Connection]
	subscribers *dataloadgen.Loader[tenantKey, *store.Subscriber]
	// health judges the connections of a list together (CrmConnection.health).
	health *dataloadgen.Loader[tenantKey, *model.ConnectionHealth]
}

// tenantKey keeps a loader's ids scoped to the tenant that asked for them.
type tenantKey struct{ tenant, id string }

func newLoaders(r *Resolver) *loaders {
	return &loaders{
		groups:      scopedLoader(r.Store.GroupsByIDs),
		connections: scopedLoader(r.Store.ConnectionsByIDs),
		subscribers: scopedLoader(r.Store.SubscribersByIDs),
		health:      scopedLoader(r.connectionHealth),
	}
}

// scopedLoader batches the loads of one kind of record into one fetch per tenant.
func scopedLoader[V any](fetch func(context.Context, string, []string) (map[string]V, error)) *dataloadgen.Loader[tenantKey, V] {
	return dataloadgen.NewMappedLoader(func(ctx context.Context, keys []tenantKey) (map[tenantKey]V, error) {
		return loadScoped(ctx, keys, fetch)
	}, dataloadgen.WithWait(time.Millisecond))
}

// loadScoped runs one query per tenant among the keys (in practice: one) and maps
// the answers back; a key without an answer is "not found".
func loadScoped[V any](ctx context.Context, keys []tenantKey, fetch func(context.Context, string, []string) (map[string]V, error)) (map[tenantKey]V, error) {
	byTenant := map[string][]string{}
	for _, k := range keys {
		byTenant[k.tenant] = append(byTenant[k.tenant], k.id)
	}
	out := make(map[tenantKey]V, len(keys))
	errs := dataloadgen.MappedFetchError[tenantKey]{}
	for tenant, ids := range byTenant {
		found, err := fetch(ctx, tenant, ids)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if v, ok := found[id]; ok {
				out[tenantKey{tenant, id}] = v
			} else {
				errs[tenantKey{tenant, id}] = store.ErrNotFound
			}
		}
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

type loadersKey struct{}

// withLoaders gives each request loaders of its own, so nothing is cached across
// requests (or callers).
func withLoaders(res *Resolver, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), loadersKey{}, newLoaders(res))))
	})
}

func (r *Resolver) group(ctx context.Context, tenant, id string) (*store.Group, error) {
	if l, ok := ctx.Value(loadersKey{}).(*loaders); ok {
		return l.groups.Load(ctx, tenantKey{tenant, id})
	}
	return r.Store.Group(ctx, tenant, id)
}

func (r *Resolver) connection(ctx context.Context, tenant, id string) (*store.Connection, error) {
	if l, ok := ctx.Value(loadersKey{}).(*loaders); ok {
		return l.connections.Load(ctx, tenantKey{tenant, id})
	}
	return r.Store.Connection(ctx, tenant, id)
}

func (r *Resolver) subscriber(ctx context.Context, tenant, id string) (*store.Subscriber, error) {
	if l, ok := ctx.Value(loadersKey{}).(*loaders); ok {
		return l.subscribers.Load(ctx, tenantKey{tenant, id})
	}
	return r.Store.Subscriber(ctx, tenant, id)
}

func (r *Resolver) health(ctx context.Context, conn *store.Connection) (*model.ConnectionHealth, error) {
	if l, ok := ctx.Value(loadersKey{}).(*loaders); ok {
		return l.health.Load(ctx, tenantKey{conn.Tenant, conn.ID})
	}
	hs, err := r.connectionHealth(ctx, conn.Tenant, []string{conn.ID})
	return hs[conn.ID], err
}
