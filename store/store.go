package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Config configures the connection to MongoDB.
type Config struct {
	// URI is a mongodb:// or mongodb+srv:// address; required.
	URI string
	// Embedded is set when URI is the embedded server (package store/embedded): the
	// store then uses one connection, which makes every operation atomic there, and
	// has the server index new collections after Migrate.
	Embedded Indexer
	// Database is the database name; default "crmsync".
	Database string
	// SecretKey (32 bytes, CRMSYNC_SECRET_KEY) encrypts the secrets that connections keep.
	SecretKey []byte
	// KeyGrace is how long a replaced webhook key keeps working (CRMSYNC_KEY_GRACE);
	// default 24h.
	KeyGrace time.Duration
	// Logger receives store diagnostics; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Monitor observes every command sent to the database (tests count round trips
	// with it); optional.
	Monitor *event.CommandMonitor
}

// Indexer is what the store needs of the embedded server: to index the tables of
// collections Migrate created (see store/embedded/sqliteindex.go).
type Indexer interface {
	IndexNow(ctx context.Context) error
}

// Store is crmsync's MongoDB repository: one handle shared by every component.
type Store struct {
	client   *mongo.Client
	db       *mongo.Database
	embedded Indexer
	// ferret is set when the server is FerretDB (embedded or not), whose queries
	// other than by _id scan their collection (design.md): the store then prefers
	// lookups by _id.
	ferret   bool
	sealer   *sealer
	keyGrace time.Duration
	logger   *slog.Logger
	now      func() time.Time
}

// Collection names, in one place so that indexes and queries agree.
const (
	colConnections = "connections"
	colGroups      = "groups"
	colSubscribers = "subscribers"
	colAddresses   = "addresses"
	colCRMLinks    = "crmlinks"
	colInbox       = "inbox"
	colInboxBodies = "inboxBodies"
	colHealth      = "health"
	colTombstones  = "tombstones"
	colLists       = "lists"
	colListMembers = "listMembers"
	colRuns        = "syncRuns"
	colChanges     = "syncChanges"
	colPending     = "pendingSubscriptions"
	colSends       = "campaignSends"
	colRecipients  = "campaignRecipients"
	colMessages    = "campaignMessages"
	colReactions   = "reactions"
	// colResponseClaims holds one document per message and reaction type whose
	// CRM response was claimed (connections writing the first response only).
	colResponseClaims = "campaignResponseClaims"
	colForms          = "forms"
	// colConsent is the consent ledger: append-only.
	colConsent = "consentEvents"
	// colConfirmations holds the double opt-in requests waiting for their
	// confirmation, colConfirmationUses one document per confirmation link used.
	colConfirmations    = "confirmations"
	colConfirmationUses = "confirmationUses"
	// colSchemaMigrations holds one document per data migration applied
	// (store/migrate.go), colSettings the settings recorded for the whole fleet.
	colSchemaMigrations = "schemaMigrations"
	colSettings         = "settings"
)

// Open connects to cfg.URI, or starts the embedded server when it is empty, and
// checks that the database answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	logger := cmp.Or(cfg.Logger, slog.Default())
	sl, err := newSealer(cfg.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{sealer: sl, embedded: cfg.Embedded, keyGrace: cfg.KeyGrace, logger: logger, now: time.Now}
	if cfg.KeyGrace == 0 {
		s.keyGrace = 24 * time.Hour
	}
	if cfg.Now != nil {
		s.now = cfg.Now
	}
	uri := cfg.URI
	if uri == "" {
		return nil, errors.New("open store: URI is required")
	}
	opts := options.Client()
	if cfg.Monitor != nil {
		opts.SetMonitor(cfg.Monitor)
	}
	if cfg.Embedded != nil {
		// One connection makes every operation atomic in the embedded server, which
		// does not serialise concurrent updates of one document by itself (design.md).
		opts.SetMaxPoolSize(1)
	}
	opts.ApplyURI(uri).
		SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true, UseJSONStructTags: false}).
		SetServerSelectionTimeout(5 * time.Second).
		SetTimeout(30 * time.Second)
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.client = client
	s.db = client.Database(cmp.Or(cfg.Database, "crmsync"))
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx, nil); err != nil {
		_ = s.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("open store: ping %s: %w", redactURI(uri), err)
	}
	var info bson.Raw
	if err := client.Database("admin").RunCommand(pingCtx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err == nil {
		_, err := info.LookupErr("ferretdbVersion")
		s.ferret = err == nil
	}
	s.ferret = s.ferret || cfg.Embedded != nil
	return s, nil
}

// Embedded reports whether this store uses the embedded server.
func (s *Store) Embedded() bool { return s.embedded != nil }

// Close disconnects; an embedded server is stopped by whoever started it.
func (s *Store) Close(ctx context.Context) error {
	if s.client == nil {
		return nil
	}
	return s.client.Disconnect(ctx)
}

// CheckWritable proves that the store accepts writes now, for /readyz.
func (s *Store) CheckWritable(ctx context.Context) error {
	_, err := s.db.Collection(colHealth).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: "readyz"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "at", Value: s.now().UTC()}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return unavailable("check store", err)
	}
	return nil
}

// Migrate brings the store to the schema this binary reads: indexes, then the
// pending data migrations (store/migrate.go), each logged once applied. It is
// idempotent, safe when several instances start at once, and runs at every start;
// a store already migrated by a newer crmsync is a *SchemaTooNewError.
func (s *Store) Migrate(ctx context.Context) error {
	rep, err := s.MigrateWithReport(ctx)
	if err != nil {
		return err
	}
	for _, m := range rep.Applied {
		// A new store has nothing in an old shape: that is not news.
		level := slog.LevelInfo
		if m.Documents == 0 {
			level = slog.LevelDebug
		}
		s.logger.Log(ctx, level, "data migration applied", slog.Int("version", m.Version), slog.String("name", m.Name),
			slog.Int("documents", m.Documents), slog.Duration("took", m.Duration))
	}
	return nil
}

// createIndexes declares the indexes that queries rely on in real MongoDB and
// creates every collection.
func (s *Store) createIndexes(ctx context.Context) error {
	// Lookups by _id need no index of their own; these serve the list queries.
	// Every index is named, so running Migrate again finds it in place.
	indexes := map[string][]mongo.IndexModel{
		colConnections: {index("tenant_1", "tenant")},
		colGroups:      {index("tenant_1_connectionId_1_crmSync_1", "tenant", "connectionId", "crmSync")},
		colSubscribers: {index("tenant_1_groupId_1__id_1", "tenant", "groupId", "_id")},
		colInbox:       {index("status_1_receivedAt_1", "status", "receivedAt"), index("tenant_1_connectionId_1_receivedAt_1", "tenant", "connectionId", "receivedAt")},
		colLists:       {index("tenant_1_connectionId_1__id_1", "tenant", "connectionId", "_id"), index("nextSyncAt_1", "nextSyncAt"), index("tenant_1_groupId_1", "tenant", "groupId")},
		colListMembers: {index("tenant_1_crmListId_1_removedAt_1__id_1", "tenant", "crmListId", "removedAt", "_id"), index("tenant_1_subscriberId_1", "tenant", "subscriberId")},
		colRuns:        {index("status_1_nextAttemptAt_1", "status", "nextAttemptAt"), index("tenant_1_crmListId_1_startedAt_1", "tenant", "crmListId", "startedAt")},
		colChanges:     {index("runId_1__id_1", "runId", "_id")},
		colSends:       {index("tenant_1_createdAt_1", "tenant", "createdAt"), index("status_1_nextAttemptAt_1", "status", "nextAttemptAt"), index("tenant_1_groupId_1_status_1", "tenant", "groupId", "status")},
		colRecipients:  {index("sendId_1", "sendId")},
		colMessages:    {index("tenant_1_sendId_1_email_1", "tenant", "sendId", "email"), index("tenant_1_sendId_1_subscriberId_1", "tenant", "sendId", "subscriberId")},
		colReactions:   {index("tenant_1_sendId_1_type_1__id_1", "tenant", "sendId", "type", "_id")},

		// Forms, the consent ledger and double opt-in requests (store/form.go, consent.go, signup.go).
		colForms:            {index("tenant_1__id_1", "tenant", "_id"), index("tenant_1_groupId_1", "tenant", "groupId")},
		colConsent:          {index("tenant_1_subscriberId_1__id_1", "tenant", "subscriberId", "_id"), index("tenant_1_email_1__id_1", "tenant", "email", "_id")},
		colConfirmations:    {index("expiresAt_1", "expiresAt"), index("tenant_1_subscriberId_1", "tenant", "subscriberId")},
		colConfirmationUses: {index("expiresAt_1", "expiresAt")},
	}
	for col, models := range indexes {
		// One at a time: FerretDB 1.24 panics when one createIndexes command names
		// several indexes that exist already.
		for _, m := range models {
			if _, err := s.db.Collection(col).Indexes().CreateOne(ctx, m); err != nil {
				return fmt.Errorf("migrate: create indexes on %s: %w", col, err)
			}
		}
	}
	// Create every collection now, so the embedded store can index them at once.
	for _, col := range []string{colConnections, colGroups, colSubscribers, colAddresses, colCRMLinks, colInbox, colInboxBodies, colHealth, colTombstones, colLists, colListMembers, colRuns, colChanges, colPending, colSends, colRecipients, colMessages, colReactions, colResponseClaims,
		colForms, colConsent, colConfirmations, colConfirmationUses, colSchemaMigrations, colSettings} {
		err := s.db.CreateCollection(ctx, col)
		var cmdErr mongo.CommandError
		if err != nil && !(errors.As(err, &cmdErr) && cmdErr.Code == 48) { // 48: NamespaceExists
			return fmt.Errorf("migrate: create collection %s: %w", col, err)
		}
	}
	if s.embedded != nil {
		if err := s.embedded.IndexNow(ctx); err != nil {
			return fmt.Errorf("migrate: index the embedded store: %w", err)
		}
	}
	return nil
}

func index(name string, fields ...string) mongo.IndexModel {
	keys := bson.D{}
	for _, f := range fields {
		keys = append(keys, bson.E{Key: f, Value: 1})
	}
	return mongo.IndexModel{Keys: keys, Options: options.Index().SetName(name)}
}

// findOwned loads the document with the given _id into out when it belongs to tenant.
// Looking up by _id alone keeps the embedded server on its index; the tenant is then
// checked here, and another tenant's document is simply "not found".
func (s *Store) findOwned(ctx context.Context, col, tenant, id string, out any) error {
	raw, err := s.db.Collection(col).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return ErrNotFound
	}
	if err != nil {
		return unavailable("find "+col, err)
	}
	if t, ok := raw.Lookup("tenant").StringValueOK(); !ok || t != tenant {
		return ErrNotFound
	}
	if err := bson.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %s %s: %w", col, id, err)
	}
	return nil
}

// findByID loads the document with the given _id into out, without a tenant check;
// only for internal documents keyed by ids that already include the tenant.
func (s *Store) findByID(ctx context.Context, col, id string, out any) error {
	err := s.db.Collection(col).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(out)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return ErrNotFound
	}
	if err != nil {
		return unavailable("find "+col, err)
	}
	return nil
}

// replaceByID writes doc over the document with the given _id, creating it when missing.
func (s *Store) replaceByID(ctx context.Context, col, id string, doc any) error {
	_, err := s.db.Collection(col).ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		return unavailable("write "+col, err)
	}
	return nil
}

func redactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparsable URI)"
	}
	return u.Redacted()
}

// DropDatabase removes the whole database; tests use it to clean up after themselves.
func (s *Store) DropDatabase(ctx context.Context) error {
	return s.db.Drop(ctx)
}

// findAll reads every document of col that matches filter; what names them in
// errors.
func findAll[T any](ctx context.Context, col *mongo.Collection, what string, filter bson.D, opts ...options.Lister[options.FindOptions]) ([]*T, error) {
	cur, err := col.Find(ctx, filter, opts...)
	if err != nil {
		return nil, unavailable("list "+what, err)
	}
	var out []*T
	if err := cur.All(ctx, &out); err != nil {
		return nil, unavailable("list "+what, err)
	}
	return out, nil
}

// findPage reads up to first documents of col that match filter, in sort order,
// and reports whether more follow (it asks for one more to know).
func findPage[T any](ctx context.Context, col *mongo.Collection, what string, filter, sort bson.D, first int) ([]*T, bool, error) {
	out, err := findAll[T](ctx, col, what, filter, options.Find().SetSort(sort).SetLimit(int64(first)+1))
	if err != nil {
		return nil, false, err
	}
	if len(out) > first {
		return out[:first], true, nil
	}
	return out, false, nil
}

// count counts the documents of col that match filter; what names them in errors.
func count(ctx context.Context, col *mongo.Collection, what string, filter bson.D) (int, error) {
	n, err := col.CountDocuments(ctx, filter)
	if err != nil {
		return 0, unavailable("count "+what, err)
	}
	return int(n), nil
}

// byID is the sort of pages in id order.
var byID = bson.D{{Key: "_id", Value: 1}}

// findIn loads the documents whose _id is among ids. On real MongoDB that is one
// $in query on the _id index; FerretDB cannot use an index for $in and would scan
// the collection for every call, so there it looks each id up on its own — linear
// in ids, not in the collection.
func (s *Store) findIn(ctx context.Context, col string, ids bson.A, out any) error {
	if len(ids) == 0 {
		return nil
	}
	if !s.ferret {
		cur, err := s.db.Collection(col).Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return unavailable("find "+col, err)
		}
		if err := cur.All(ctx, out); err != nil {
			return unavailable("find "+col, err)
		}
		return nil
	}
	slice := reflect.ValueOf(out).Elem()
	elem := slice.Type().Elem()
	for _, id := range ids {
		raw, err := s.db.Collection(col).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue
		}
		if err != nil {
			return unavailable("find "+col, err)
		}
		v := reflect.New(elem)
		if elem.Kind() == reflect.Pointer {
			v.Elem().Set(reflect.New(elem.Elem()))
			err = bson.Unmarshal(raw, v.Elem().Interface())
		} else {
			err = bson.Unmarshal(raw, v.Interface())
		}
		if err != nil {
			return fmt.Errorf("decode %s %v: %w", col, id, err)
		}
		slice.Set(reflect.Append(slice, v.Elem()))
	}
	return nil
}
