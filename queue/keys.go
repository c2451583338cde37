package queue

// Keys builds every Redis key crmsync uses, under one prefix so that several
// installations (or tests) can share a server. Keys that Lua scripts or
// multi-key commands use together share a {hash tag}, so Redis Cluster works.
type Keys struct {
	prefix string
}

// NewKeys returns the key builder for a prefix ("crmsync" by default).
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = "crmsync"
	}
	return Keys{prefix: prefix}
}

// Events is the stream of ingested event ids waiting for the engine.
func (k Keys) Events() string { return k.prefix + ":{events}:stream" }

// Prefix is the prefix all keys start with.
func (k Keys) Prefix() string { return k.prefix }
