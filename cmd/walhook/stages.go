package main

import "context"

// devStages builds every stage that exists, wired to the process's config, logger and metrics.
func devStages(ctx context.Context, p *process) ([]service, error) {
	return nil, nil
}
