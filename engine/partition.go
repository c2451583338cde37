package engine

import (
	"context"
	"slices"
	"time"

	"crmsync/queue"
)

// partitions tracks which stream partitions this worker holds. Each worker aims for
// a fair share (partitions / live workers, rounded up): it takes free partitions
// while below it and gives back the surplus, so a joining worker gets work and a
// dead one's partitions are taken over when its leases expire.
type partitions struct {
	stream *queue.Stream
	leases *queue.Leases
	owner  string
	owned  map[int]bool
}

func newPartitions(stream *queue.Stream, leases *queue.Leases, owner string) *partitions {
	return &partitions{stream: stream, leases: leases, owner: owner, owned: map[int]bool{}}
}

// list returns the held partitions in order.
func (p *partitions) list() []int {
	out := make([]int, 0, len(p.owned))
	for part := range p.owned {
		out = append(out, part)
	}
	slices.Sort(out)
	return out
}

// rebalance renews the held leases, gives back the surplus and takes free
// partitions up to the fair share. It returns the partitions newly taken.
func (p *partitions) rebalance(ctx context.Context, now time.Time) (taken []int, err error) {
	members, err := p.leases.Heartbeat(ctx, p.owner, now)
	if err != nil {
		return nil, err
	}
	for _, part := range p.list() {
		ok, err := p.leases.Renew(ctx, part, p.owner)
		if err != nil {
			return nil, err
		}
		if !ok {
			delete(p.owned, part)
		}
	}
	n := p.stream.Partitions()
	share := (n + max(members, 1) - 1) / max(members, 1)
	held := p.list()
	for i := len(held) - 1; i >= share; i-- {
		if err := p.leases.Release(ctx, held[i], p.owner); err != nil {
			return nil, err
		}
		delete(p.owned, held[i])
	}
	// Start the search at a place of our own, so workers do not all race for partition 0.
	start := p.stream.PartitionOf(p.owner)
	for i := 0; i < n && len(p.owned) < share; i++ {
		part := (start + i) % n
		if p.owned[part] {
			continue
		}
		ok, err := p.leases.Acquire(ctx, part, p.owner)
		if err != nil {
			return taken, err
		}
		if ok {
			p.owned[part] = true
			taken = append(taken, part)
		}
	}
	return taken, nil
}

// releaseAll gives every held partition back and leaves the live workers.
func (p *partitions) releaseAll(ctx context.Context) {
	for part := range p.owned {
		_ = p.leases.Release(ctx, part, p.owner)
	}
	p.owned = map[int]bool{}
	_ = p.leases.Leave(ctx, p.owner)
}
