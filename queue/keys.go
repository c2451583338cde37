package queue

import "strconv"

// Keys builds every Redis key crmsync uses, under one prefix so that several
// installations (or tests) can share a server. The event streams and their leases
// share the hash tag {events}, so multi-stream reads work on Redis Cluster.
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

// Prefix is the prefix all keys start with.
func (k Keys) Prefix() string { return k.prefix }

// Partition is the stream of one partition of the event ids waiting for the engine.
func (k Keys) Partition(p int) string { return k.prefix + ":{events}:p" + strconv.Itoa(p) }

// Lease is the key whose holder owns partition p.
func (k Keys) Lease(p int) string { return k.prefix + ":{events}:lease:" + strconv.Itoa(p) }

// Members is the sorted set of live workers (score: last heartbeat, unix ms).
func (k Keys) Members() string { return k.prefix + ":{events}:members" }

// PersistedQuery is where a GraphQL document is kept under its SHA-256.
func (k Keys) PersistedQuery(hash string) string { return k.prefix + ":apq:" + hash }

// Job is the lease key of a named job (see Jobs). Job keys carry the job name as
// their hash tag, so the lease and its fencing counter live in one cluster slot.
func (k Keys) Job(name string) string { return k.prefix + ":job:{" + name + "}" }

// JobFence is the counter that hands out a job's fencing tokens.
func (k Keys) JobFence(name string) string { return k.prefix + ":job:{" + name + "}:fence" }

// RunSet is the set of CRM records a list sync run has seen (see RunSets).
func (k Keys) RunSet(run string) string { return k.prefix + ":run:{" + run + "}:seen" }

// EventNotices is the pub/sub channel announcing a tenant's event outcomes.
func (k Keys) EventNotices(tenant string) string { return k.prefix + ":notices:" + tenant }

// RateLimit is the counter of one rate-limited key's current window (see
// RateLimiter); the key is its own hash tag.
func (k Keys) RateLimit(key string) string { return k.prefix + ":rate:{" + key + "}" }

// Budget is the hash of a connection's Web API request counts in one hour (unix
// time / 3600; see Budget); the connection is the hash tag, so all its hours share
// a cluster slot.
func (k Keys) Budget(connectionID string, hour int64) string {
	return k.prefix + ":budget:{" + connectionID + "}:" + strconv.FormatInt(hour, 10)
}
