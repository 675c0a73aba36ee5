package main

import "context"

// devStages builds every stage that exists, wired to the process's config, logger and metrics.
func devStages(_ context.Context, p *process) ([]service, error) {
	cdcSvc, err := cdcService(p)
	if err != nil {
		return nil, err
	}
	return []service{cdcSvc}, nil
}
