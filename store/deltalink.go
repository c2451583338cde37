package store

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// colDeltaLinks keeps the anti-entropy sweep's change-tracking position per
// connection and table. It is written once per table and sweep, so the embedded
// store needs no index for it beyond its _id.
const colDeltaLinks = "deltalinks"

// DeltaLink is where the anti-entropy sweep of one connection's table stands: the
// @odata.deltaLink of its last change-tracking read, the columns that link was made
// with (a link keeps them, so a mapping change must start over), and when that read
// began.
type DeltaLink struct {
	ID           string `bson:"_id"`
	ConnectionID string `bson:"connectionId"`
	Table        string `bson:"table"`
	Link         string `bson:"link"`
	// Columns are the selected columns, comma-separated, in the order the sweep asks.
	Columns string `bson:"columns"`
	// SweptAt is when the read that returned Link began: rows changed since then are
	// what the next read reports.
	SweptAt time.Time `bson:"sweptAt"`
}

func deltaLinkID(connectionID, table string) string { return connectionID + "|" + table }

// DeltaLink loads the sweep position of a connection's table; ErrNotFound before
// the first sweep.
func (s *Store) DeltaLink(ctx context.Context, connectionID, table string) (*DeltaLink, error) {
	var d DeltaLink
	if err := s.findByID(ctx, colDeltaLinks, deltaLinkID(connectionID, table), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// SaveDeltaLink records the sweep position of a connection's table, replacing the
// previous one.
func (s *Store) SaveDeltaLink(ctx context.Context, d *DeltaLink) error {
	if d.ConnectionID == "" || d.Table == "" {
		return errors.New("save delta link: connection and table are required")
	}
	d.ID = deltaLinkID(d.ConnectionID, d.Table)
	d.SweptAt = d.SweptAt.UTC()
	return s.replaceByID(ctx, colDeltaLinks, d.ID, d)
}

// SweepConnections lists, across tenants, the connections that have client
// credentials: the ones whose changes the anti-entropy sweep can read. The
// connections collection is small (one document per CRM organisation), so this
// scan stays cheap in the embedded store too.
func (s *Store) SweepConnections(ctx context.Context) ([]*Connection, error) {
	return findAll[Connection](ctx, s.db.Collection(colConnections), "connections to sweep",
		bson.D{{Key: "clientId", Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: ""}}}},
		options.Find().SetSort(byID))
}
