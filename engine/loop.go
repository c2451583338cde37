package engine

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// loop runs one background goroutine of a component with Start and Stop.
type loop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// start runs fn in the background with a context of its own, which stop ends; ctx's
// cancellation does not (shutdown goes through stop, in order).
func (l *loop) start(ctx context.Context, fn func(ctx context.Context)) {
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn(ctx)
	}()
}

// stop ends the loop's context and waits for fn to return, or for ctx.
func (l *loop) stop(ctx context.Context, what string) error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", what, ctx.Err())
	}
}

// every starts the loop with tick, run at once and then every interval until stop.
func (l *loop) every(ctx context.Context, interval time.Duration, tick func(ctx context.Context)) {
	l.start(ctx, func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			tick(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}
