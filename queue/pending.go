package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Pending counts the entries of all partitions that a worker has read and not
// acknowledged yet: the events in hand, and failed ones waiting for their retry.
// A partition without the consumer group (Redis lost it) counts none.
func (s *Stream) Pending(ctx context.Context) (int64, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range s.partitions {
			p.XPending(ctx, s.keys.Partition(i), s.group)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !isNoGroup(err) {
		return 0, fmt.Errorf("pending events: %w", err)
	}
	var n int64
	for _, c := range cmds {
		cmd := c.(*redis.XPendingCmd)
		if err := cmd.Err(); err != nil {
			if errors.Is(err, redis.Nil) || isNoGroup(err) {
				continue
			}
			return 0, fmt.Errorf("pending events: %w", err)
		}
		n += cmd.Val().Count
	}
	return n, nil
}

func isNoGroup(err error) bool { return strings.HasPrefix(err.Error(), "NOGROUP") }
