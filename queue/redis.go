package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Config says which Redis to use; at most one of URL, ClusterAddrs and the Sentinel
// pair is set. With none set, Open starts an in-process Redis.
type Config struct {
	// URL is a redis:// or rediss:// address (REDIS_URL).
	URL string
	// ClusterAddrs are Redis Cluster seed addresses (REDIS_CLUSTER_ADDRS).
	ClusterAddrs []string
	// SentinelMaster and SentinelAddrs select Redis Sentinel.
	SentinelMaster string
	SentinelAddrs  []string
}

// Redis is an open Redis client and, in embedded mode, the server behind it.
type Redis struct {
	Client   redis.UniversalClient
	embedded *miniredis.Miniredis
}

// Open connects to the configured Redis, or starts an embedded one. A configured
// Redis that does not answer yet is not an error: webhooks are still accepted
// into the store, and work is published once Redis answers.
func Open(cfg Config) (*Redis, error) {
	switch {
	case cfg.URL != "":
		opts, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		return &Redis{Client: redis.NewClient(opts)}, nil
	case len(cfg.ClusterAddrs) > 0:
		return &Redis{Client: redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.ClusterAddrs})}, nil
	case cfg.SentinelMaster != "" || len(cfg.SentinelAddrs) > 0:
		if cfg.SentinelMaster == "" || len(cfg.SentinelAddrs) == 0 {
			return nil, errors.New("REDIS_SENTINEL_MASTER and REDIS_SENTINEL_ADDRS must be set together")
		}
		return &Redis{Client: redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: cfg.SentinelMaster, SentinelAddrs: cfg.SentinelAddrs,
		})}, nil
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	return &Redis{Client: redis.NewClient(&redis.Options{Addr: m.Addr()}), embedded: m}, nil
}

// Embedded reports whether this Redis runs in-process.
func (r *Redis) Embedded() bool { return r.embedded != nil }

// Ping checks that Redis answers within a second.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return r.Client.Ping(ctx).Err()
}

// Close closes the client and stops the embedded server.
func (r *Redis) Close() error {
	err := r.Client.Close()
	if r.embedded != nil {
		r.embedded.Close()
	}
	return err
}

// SplitAddrs splits a comma-separated address list, dropping blanks.
func SplitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
