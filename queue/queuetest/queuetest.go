// Package queuetest gives tests a Redis and a key prefix of their own: REDIS_URL when
// set, else the server on 127.0.0.1:6379 when it answers, else an in-process Redis.
package queuetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"crmsync/queue"
)

var (
	once    sync.Once
	addrURL string
	mini    *miniredis.Miniredis
)

// URL returns the address of the Redis tests use.
func URL(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		if u := os.Getenv("REDIS_URL"); u != "" {
			addrURL = u
			return
		}
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if c.Ping(ctx).Err() == nil {
			addrURL = "redis://127.0.0.1:6379/0"
			return
		}
		fmt.Fprintln(os.Stderr, "queuetest: no Redis at 127.0.0.1:6379 and REDIS_URL unset; using an in-process Redis")
		mini = miniredis.NewMiniRedis()
		if err := mini.Start(); err != nil {
			panic(err)
		}
		addrURL = "redis://" + mini.Addr() + "/0"
	})
	return addrURL
}

// Open returns a client and a key prefix used by this test alone; the keys under
// the prefix are deleted when the test ends.
func Open(tb testing.TB) (*queue.Redis, queue.Keys) {
	tb.Helper()
	r, err := queue.Open(queue.Config{URL: URL(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	keys := queue.NewKeys(Prefix(tb))
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := r.Client.Scan(ctx, 0, keys.Prefix()+":*", 100).Iterator()
		for iter.Next(ctx) {
			r.Client.Del(ctx, iter.Val())
		}
		r.Close()
	})
	return r, keys
}

// Prefix returns a key prefix unique to this test run.
func Prefix(tb testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return fmt.Sprintf("test:%x", b)
}
