package engine

import (
	"context"
	"log/slog"
	"time"

	"crmsync/queue"
)

// leased runs fn while this instance holds the fenced job lease job, renewing it
// every third of its TTL. Losing the lease cancels fn's context; the fencing token
// fn receives makes the store refuse whatever fn still tries to record after
// that. It reports false, without running fn, when another instance holds the job.
func leased(ctx context.Context, jobs *queue.Jobs, job, owner string, log *slog.Logger, fn func(ctx context.Context, token int64)) bool {
	token, ok, err := jobs.Acquire(ctx, job, owner)
	if err != nil {
		log.WarnContext(ctx, "cannot take a job lease", slog.String("job", job), slog.String("error", err.Error()))
		return false
	}
	if !ok {
		return false
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(jobs.TTL() / 3)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				if ok, err := jobs.Renew(runCtx, job, owner, token); err == nil && !ok {
					log.WarnContext(ctx, "lost a job lease; its work stops", slog.String("job", job))
					cancel()
					return
				}
			}
		}
	}()
	defer func() {
		cancel()
		<-renewed
		if err := jobs.Release(context.WithoutCancel(ctx), job, owner, token); err != nil {
			log.WarnContext(ctx, "cannot release a job lease", slog.String("job", job), slog.String("error", err.Error()))
		}
	}()
	fn(runCtx, token)
	return true
}
