package kafkatest

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// RefuseCommits makes the kfake cluster answer the next n transaction commits (EndTxn with
// commit) with INVALID_TXN_STATE, which franz-go does not retry: what a stage sees when its
// transaction coordinator fails over mid-commit. The returned counter says how many it refused.
func RefuseCommits(cluster *kfake.Cluster, n int32) *atomic.Int32 {
	var refused atomic.Int32
	cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		r := req.(*kmsg.EndTxnRequest)
		if !r.Commit || refused.Load() >= n {
			return nil, nil, false
		}
		refused.Add(1)
		resp := r.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	return &refused
}
