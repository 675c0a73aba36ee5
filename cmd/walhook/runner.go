package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"
)

// service is one long-running part of a process: a stage, the metrics endpoint, a receiver.
type service struct {
	name string
	run  func(ctx context.Context) error
}

// runServices runs every service until ctx is done or one of them fails; then it cancels the
// rest and waits for all of them, so no goroutine outlives the call. The first failure is returned;
// a clean stop on ctx returns nil.
func runServices(ctx context.Context, log *zap.Logger, services ...service) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for _, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.run(ctx)
			if err != nil && !errors.Is(err, context.Canceled) {
				once.Do(func() { firstErr = fmt.Errorf("%s: %w", s.name, err) })
				log.Error("service stopped with an error; stopping the others", zap.String("service", s.name), zap.Error(err))
			} else {
				log.Debug("service stopped", zap.String("service", s.name))
			}
			cancel()
		}()
	}
	wg.Wait()
	return firstErr
}
