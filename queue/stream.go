package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Stream is the event stream with its consumer group: producers publish event ids,
// consumers of the group each receive a share and acknowledge what they finished.
type Stream struct {
	rdb   redis.UniversalClient
	key   string
	group string
}

// Message is one stream entry: its stream id and the event id it carries.
type Message struct {
	ID      string
	EventID string
}

// ConsumerGroup is the name of the engine's consumer group.
const ConsumerGroup = "engine"

// NewEventStream returns the event stream for these keys.
func NewEventStream(rdb redis.UniversalClient, keys Keys) *Stream {
	return &Stream{rdb: rdb, key: keys.Events(), group: ConsumerGroup}
}

// EnsureGroup creates the consumer group (and the stream) if they do not exist yet;
// calling it again is harmless.
func (s *Stream) EnsureGroup(ctx context.Context) error {
	err := s.rdb.XGroupCreateMkStream(ctx, s.key, s.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group: %w", err)
	}
	return nil
}

// Publish appends event ids to the stream in one pipeline.
func (s *Stream) Publish(ctx context.Context, eventIDs ...string) error {
	if len(eventIDs) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range eventIDs {
			p.XAdd(ctx, &redis.XAddArgs{Stream: s.key, Values: []any{"event", id}})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish events: %w", err)
	}
	return nil
}

// Read returns up to count new entries for consumer, waiting at most block for some
// to arrive (never forever). No entries is not an error.
func (s *Stream) Read(ctx context.Context, consumer string, count int, block time.Duration) ([]Message, error) {
	res, err := s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: s.group, Consumer: consumer, Streams: []string{s.key, ">"}, Count: int64(count), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			// Redis lost the group (a restart without persistence): make it again.
			if gerr := s.EnsureGroup(ctx); gerr != nil {
				return nil, gerr
			}
			return nil, nil
		}
		return nil, fmt.Errorf("read events: %w", err)
	}
	var out []Message
	for _, st := range res {
		out = append(out, messages(st.Messages)...)
	}
	return out, nil
}

// Claim takes over entries that other consumers left unacknowledged for longer
// than minIdle (a crashed worker's), up to count of them.
func (s *Stream) Claim(ctx context.Context, consumer string, minIdle time.Duration, count int) ([]Message, error) {
	msgs, _, err := s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: s.key, Group: s.group, Consumer: consumer, MinIdle: minIdle, Start: "0", Count: int64(count),
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("claim idle events: %w", err)
	}
	return messages(msgs), nil
}

// Ack acknowledges finished entries and removes them from the stream.
func (s *Stream) Ack(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, s.key, s.group, ids...)
		p.XDel(ctx, s.key, ids...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("ack events: %w", err)
	}
	return nil
}

func messages(in []redis.XMessage) []Message {
	out := make([]Message, 0, len(in))
	for _, m := range in {
		id, _ := m.Values["event"].(string)
		out = append(out, Message{ID: m.ID, EventID: id})
	}
	return out
}

// Len counts the entries in the stream: unread ones and those read but not yet
// acknowledged.
func (s *Stream) Len(ctx context.Context) (int64, error) {
	n, err := s.rdb.XLen(ctx, s.key).Result()
	if err != nil {
		return 0, fmt.Errorf("stream length: %w", err)
	}
	return n, nil
}
