package main

import "context"

// devStages builds every stage, wired to the process's config, logger and metrics, in pipeline
// order.
func devStages(_ context.Context, p *process) ([]service, error) {
	var services []service
	for _, build := range []func(*process) (service, error){cdcService, bubbleupService, deliverService, complyService} {
		svc, err := build(p)
		if err != nil {
			return nil, err
		}
		services = append(services, svc)
	}
	return services, nil
}
