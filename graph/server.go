package graph

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/vektah/gqlparser/v2/ast"

	"crmsync/auth"
	"crmsync/graph/generated"
	"crmsync/logctx"
	"crmsync/store"
)

// Config configures the GraphQL endpoint.
type Config struct {
	// Store is what resolvers read and write; required.
	Store *store.Store
	// Verifier checks bearer tokens; required.
	Verifier *auth.Verifier
	// Publisher re-queues replayed events; required.
	Publisher Publisher
	// Changes takes subscriber changes to the CRM; nil keeps them in the eMS.
	Changes SubscriberChanges
	// Lists starts list syncs; nil makes syncMarketingList answer that list sync
	// is not available.
	Lists ListSync
	// Tester checks connections for testConnection; nil makes it answer that the
	// check is not available.
	Tester ConnectionTester
	// Notices feed the syncEvents subscription; nil makes it answer that live
	// events are not available.
	Notices Notices
	// Campaigns creates campaign sends for sendCampaign; nil makes it answer that
	// campaign sends are not available.
	Campaigns Campaigns
	// Registrar registers webhooks for registerWebhooks; nil makes it answer that
	// registration is not available.
	Registrar Registrar
	// Budget counts connections' Web API requests for apiBudget and
	// CrmConnection.health; nil makes apiBudget answer that it is not available,
	// and health say that the Web API use is unknown.
	Budget Budget
	// SendPollInterval is how often the campaignSendProgress subscription reads
	// its send from the store; default DefaultSendPollInterval.
	SendPollInterval time.Duration
	// PublicURL is how others reach this service (CRMSYNC_PUBLIC_URL), for URLs the
	// API hands out.
	PublicURL string
	// Production turns introspection off.
	Production bool
	// ComplexityLimit is the largest query cost accepted, lists weighted by their
	// `first`; default 20000 (a page of 500 subscribers with a few nested fields).
	ComplexityLimit int
	// ParserTokenLimit bounds the tokens of one query document; default 15000.
	ParserTokenLimit int
	// MaxBodyBytes is the largest request body; default 8 MiB.
	MaxBodyBytes int64
	// RequestTimeout bounds each query or mutation over HTTP (subscriptions live
	// as long as their token); default 30 s. One that runs out is answered with
	// what finished and an error for the rest.
	RequestTimeout time.Duration
	// QueryCache keeps automatic persisted queries (shared through Redis in
	// production); nil turns them off.
	QueryCache graphql.Cache[string]
	// Metrics records each operation's latency by type and outcome; nil
	// records nothing.
	Metrics Metrics
	// Logger receives resolver failures; default slog.Default().
	Logger *slog.Logger
}

// NewHandler returns the /graphql handler: POST, GET (queries only) and websocket
// transports, bearer-token authentication, limits and the error presenter. Each
// request gets an id (RequestIDHeader) that its answer echoes and its log lines
// and events carry as their correlation id.
func NewHandler(cfg Config) http.Handler {
	cfg.ComplexityLimit = cmp.Or(cfg.ComplexityLimit, 20000)
	cfg.ParserTokenLimit = cmp.Or(cfg.ParserTokenLimit, 15000)
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, 8<<20)
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, 30*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())

	resolver := &Resolver{Store: cfg.Store, Publisher: cfg.Publisher, Changes: cfg.Changes, Lists: cfg.Lists, Tester: cfg.Tester, Notices: cfg.Notices,
		Campaigns: cfg.Campaigns, Registrar: cfg.Registrar, Budget: cfg.Budget, SendPollInterval: cfg.SendPollInterval, PublicURL: cfg.PublicURL, Logger: cfg.Logger}
	schema := generated.NewExecutableSchema(generated.Config{
		Resolvers:  resolver,
		Directives: generated.DirectiveRoot{HasRole: hasRole},
		Complexity: complexity(),
	})
	srv := handler.New(schema)
	srv.AddTransport(transport.Websocket{
		KeepAlivePingInterval: 10 * time.Second,
		InitFunc:              websocketInit(cfg.Verifier),
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.SetParserTokenLimit(cfg.ParserTokenLimit)
	if !cfg.Production {
		srv.Use(extension.Introspection{})
	}
	if cfg.QueryCache != nil {
		srv.Use(extension.AutomaticPersistedQuery{Cache: cfg.QueryCache})
	}
	if cfg.Metrics != nil {
		srv.Use(operationMetrics{m: cfg.Metrics})
	}
	srv.Use(depthLimit{max: MaxDepth})
	srv.Use(extension.FixedComplexityLimit(cfg.ComplexityLimit))
	srv.AroundFields(markResolverErrors)
	srv.SetErrorPresenter(errorPresenter(cfg.Logger, cfg.RequestTimeout))
	srv.SetRecoverFunc(recoverFunc(cfg.Logger))

	return withRequestID(limitBody(cfg.MaxBodyBytes, withTimeout(cfg.RequestTimeout, cfg.Verifier.Middleware(withCallerTenant(withLoaders(resolver, srv))))))
}

// withTimeout bounds the context of every request but websocket upgrades.
func withTimeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// GraphiQLHandler serves GraphiQL for /graphql; it is not mounted in production.
func GraphiQLHandler() http.Handler {
	return playground.Handler("crmsync GraphiQL", "/graphql")
}

// websocketInit authenticates a websocket from its connection_init payload
// ({"Authorization": "Bearer <jwt>"}) and closes it with 4401 when that fails.
func websocketInit(v *auth.Verifier) transport.WebsocketInitFunc {
	return func(ctx context.Context, payload transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		c, err := v.VerifyHeader(payload.Authorization())
		if err != nil {
			if errors.Is(err, auth.ErrNoToken) {
				err = errors.New("a bearer token is required in the connection_init payload")
			}
			ctx = transport.WithWebsocketCloseCode(ctx, 4401)
			return ctx, nil, err
		}
		// The connection lives as long as its token: at expiry it closes, and the
		// client reconnects with a fresh token.
		ctx, cancel := context.WithDeadline(ctx, c.ExpiresAt)
		context.AfterFunc(ctx, cancel)
		ctx = transport.AppendCloseReason(ctx, "the token expired; reconnect with a fresh one")
		ctx = logctx.With(ctx, slog.String(logctx.Tenant, c.Tenant))
		return auth.WithCaller(ctx, c), nil, nil
	}
}

func limitBody(n int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			http.Error(w, `{"errors":[{"message":"request body too large","extensions":{"code":"BAD_USER_INPUT"}}]}`, http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

var _ graphql.ExecutableSchema = generated.NewExecutableSchema(generated.Config{})
