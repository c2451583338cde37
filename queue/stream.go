package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stream is the event stream, split into partitions by record, each with the
// engine's consumer group. All events of one record land in one partition, and a
// partition is worked by one worker at a time (see Leases), so one record's events
// are never applied concurrently.
type Stream struct {
	rdb        redis.UniversalClient
	keys       Keys
	group      string
	partitions int
}

// Entry is an event to publish: its id, and the key of the record it is about, which
// decides the partition.
type Entry struct {
	EventID string
	Key     string
}

// Message is one stream entry: where it is, and the event id it carries.
type Message struct {
	Partition int
	ID        string
	EventID   string
}

// ConsumerGroup is the name of the engine's consumer group.
const ConsumerGroup = "engine"

// DefaultPartitions is how many partitions the event stream has unless configured:
// enough to spread the work of a small fleet.
const DefaultPartitions = 16

// NewEventStream returns the event stream for these keys; partitions ≤ 0 means
// DefaultPartitions. Every process of an installation must use the same number.
func NewEventStream(rdb redis.UniversalClient, keys Keys, partitions int) *Stream {
	if partitions <= 0 {
		partitions = DefaultPartitions
	}
	return &Stream{rdb: rdb, keys: keys, group: ConsumerGroup, partitions: partitions}
}

// Partitions is the number of partitions.
func (s *Stream) Partitions() int { return s.partitions }

// PartitionOf maps a record key to its partition.
func (s *Stream) PartitionOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(s.partitions))
}

// EnsureGroup creates the consumer group (and the streams) where they do not exist
// yet; calling it again is harmless.
func (s *Stream) EnsureGroup(ctx context.Context) error {
	for p := range s.partitions {
		if err := s.ensureGroup(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Stream) ensureGroup(ctx context.Context, p int) error {
	err := s.rdb.XGroupCreateMkStream(ctx, s.keys.Partition(p), s.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group: %w", err)
	}
	return nil
}

// Publish appends entries to their partitions in one pipeline.
func (s *Stream) Publish(ctx context.Context, entries ...Entry) error {
	if len(entries) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			p.XAdd(ctx, &redis.XAddArgs{Stream: s.keys.Partition(s.PartitionOf(e.Key)), Values: []any{"event", e.EventID}})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish events: %w", err)
	}
	return nil
}

// Read returns up to count new entries per partition from the given partitions for
// consumer, waiting at most block for some to arrive (never forever). No entries
// is not an error.
func (s *Stream) Read(ctx context.Context, consumer string, partitions []int, count int, block time.Duration) ([]Message, error) {
	if len(partitions) == 0 {
		return nil, nil
	}
	streams := make([]string, 0, 2*len(partitions))
	for _, p := range partitions {
		streams = append(streams, s.keys.Partition(p))
	}
	for range partitions {
		streams = append(streams, ">")
	}
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: s.group, Consumer: consumer, Streams: streams, Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			// Redis lost the group (a restart without persistence): make it again.
			for _, p := range partitions {
				if gerr := s.ensureGroup(ctx, p); gerr != nil {
					return nil, gerr
				}
			}
			return nil, nil
		}
		return nil, fmt.Errorf("read events: %w", err)
	}
	var out []Message
	for i, st := range res {
		out = append(out, messages(s.partitionOfKey(st.Stream, partitions, i), st.Messages)...)
	}
	return out, nil
}

func (s *Stream) partitionOfKey(key string, asked []int, i int) int {
	if i < len(asked) && s.keys.Partition(asked[i]) == key {
		return asked[i]
	}
	for _, p := range asked {
		if s.keys.Partition(p) == key {
			return p
		}
	}
	return -1
}

// Claim takes over entries of a partition that were read but not acknowledged for
// longer than minIdle (a dead worker's, or a failed attempt waiting for its retry).
func (s *Stream) Claim(ctx context.Context, partition int, consumer string, minIdle time.Duration, count int) ([]Message, error) {
	msgs, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: s.keys.Partition(partition), Group: s.group, Consumer: consumer, MinIdle: minIdle, Start: "0", Count: int64(count),
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			return nil, s.ensureGroup(ctx, partition)
		}
		return nil, fmt.Errorf("claim idle events: %w", err)
	}
	return messages(partition, msgs), nil
}

// Ack acknowledges finished entries and removes them from their partitions.
func (s *Stream) Ack(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range msgs {
			key := s.keys.Partition(m.Partition)
			p.XAck(ctx, key, s.group, m.ID)
			p.XDel(ctx, key, m.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack events: %w", err)
	}
	return nil
}

// Len counts the entries in all partitions: unread ones and those read but not yet
// acknowledged.
func (s *Stream) Len(ctx context.Context) (int64, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range s.partitions {
			p.XLen(ctx, s.keys.Partition(i))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("stream length: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.(*redis.IntCmd).Val()
	}
	return n, nil
}

func messages(partition int, in []redis.XMessage) []Message {
	out := make([]Message, 0, len(in))
	for _, m := range in {
		id, _ := m.Values["event"].(string)
		out = append(out, Message{Partition: partition, ID: m.ID, EventID: id})
	}
	return out
}
