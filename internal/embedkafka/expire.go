package embedkafka

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// memberWatch makes up for a kfake bug: it removes a member of a Stable classic group that has
// sent no group request for limit. kfake arms a member's session timer when it replies to the
// member's JoinGroup; when that reply fails because the member's connection is already closed (a
// process killed while its JoinGroup was parked), no timer is ever armed. The rebalance's
// pending-sync timer would still remove it, but the leader's SyncGroup makes the group Stable and
// stops that timer, so the dead member keeps the partitions the leader gave it for as long as the
// group stays Stable. Apache Kafka expires it at its session timeout.
//
// It watches the group requests carrying a member id (JoinGroup, SyncGroup, Heartbeat,
// OffsetCommit, TxnOffsetCommit) through kfake's control hooks, which only observe, and sweeps
// the groups every limit/4 with DescribeGroups. A member never seen sending anything counts from
// the first sweep that lists it. It owns one goroutine and one client; stop ends both.
type memberWatch struct {
	limit time.Duration
	log   *zap.Logger
	cl    *kgo.Client

	mu   sync.Mutex
	seen map[memberKey]time.Time // guarded by mu; the member's last group request

	cancel context.CancelFunc
	done   chan struct{}
}

type memberKey struct{ group, member string }

func startMemberWatch(cluster *kfake.Cluster, brokers []string, limit time.Duration, log *zap.Logger) (*memberWatch, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	w := &memberWatch{limit: limit, log: log, cl: cl, seen: map[memberKey]time.Time{}, done: make(chan struct{})}
	observe := func(key kmsg.Key, ids func(kmsg.Request) (group, member string)) {
		cluster.ControlKey(int16(key), func(r kmsg.Request) (kmsg.Response, error, bool) {
			w.saw(ids(r))
			return nil, nil, false // observe only: kfake handles the request
		})
	}
	observe(kmsg.JoinGroup, func(r kmsg.Request) (string, string) {
		req := r.(*kmsg.JoinGroupRequest)
		return req.Group, req.MemberID
	})
	observe(kmsg.SyncGroup, func(r kmsg.Request) (string, string) {
		req := r.(*kmsg.SyncGroupRequest)
		return req.Group, req.MemberID
	})
	observe(kmsg.Heartbeat, func(r kmsg.Request) (string, string) {
		req := r.(*kmsg.HeartbeatRequest)
		return req.Group, req.MemberID
	})
	observe(kmsg.OffsetCommit, func(r kmsg.Request) (string, string) {
		req := r.(*kmsg.OffsetCommitRequest)
		return req.Group, req.MemberID
	})
	observe(kmsg.TxnOffsetCommit, func(r kmsg.Request) (string, string) {
		req := r.(*kmsg.TxnOffsetCommitRequest)
		return req.Group, req.MemberID
	})
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.run(ctx)
	return w, nil
}

func (w *memberWatch) saw(group, member string) {
	if member == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[memberKey{group, member}] = time.Now()
}

func (w *memberWatch) run(ctx context.Context) {
	defer close(w.done)
	tick := time.NewTicker(max(w.limit/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.sweep(ctx)
	}
}

// sweep removes every silent member of a Stable group. An error only skips this round.
func (w *memberWatch) sweep(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, w.limit)
	defer cancel()
	adm := kadm.NewClient(w.cl)
	listed, err := adm.ListGroups(sctx)
	if err != nil || len(listed) == 0 {
		return
	}
	described, err := adm.DescribeGroups(sctx, listed.Groups()...)
	if err != nil {
		return
	}
	now := time.Now()
	var silent []kadm.DescribedGroupMember
	var silentIn []string
	w.mu.Lock()
	listedNow := map[memberKey]bool{}
	for _, g := range described {
		for _, m := range g.Members {
			k := memberKey{g.Group, m.MemberID}
			listedNow[k] = true
			last, ok := w.seen[k]
			if !ok {
				w.seen[k] = now
				continue
			}
			if g.Err == nil && g.State == "Stable" && now.Sub(last) > w.limit {
				silent = append(silent, m)
				silentIn = append(silentIn, g.Group)
			}
		}
	}
	for k := range w.seen { // members gone from every group
		if !listedNow[k] {
			delete(w.seen, k)
		}
	}
	w.mu.Unlock()
	for i, m := range silent {
		w.leave(sctx, silentIn[i], m)
	}
}

func (w *memberWatch) leave(ctx context.Context, group string, m kadm.DescribedGroupMember) {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = group
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.MemberID, lm.InstanceID = m.MemberID, m.InstanceID
	lm.Reason = kmsg.StringPtr("embedkafka: silent member kfake did not expire")
	req.Members = append(req.Members, lm)
	resp, err := req.RequestWith(ctx, w.cl)
	if err == nil && len(resp.Members) > 0 {
		err = kerrFor(resp.ErrorCode, resp.Members[0].ErrorCode)
	}
	w.log.Warn("removed a group member that sent nothing for longer than the expiry: kfake did not expire it",
		zap.String("group", group), zap.String("member_id", m.MemberID), zap.String("client_id", m.ClientID),
		zap.String("client_host", m.ClientHost), zap.Duration("expiry", w.limit), zap.Error(err))
}

// stop ends the sweeps and closes the client. The control hooks stay registered; they only
// record, and the cluster is closed right after.
func (w *memberWatch) stop() {
	w.cancel()
	<-w.done
	w.cl.Close()
}

// kerrFor is the error of the first non-zero Kafka error code.
func kerrFor(codes ...int16) error {
	for _, c := range codes {
		if err := kerr.ErrorForCode(c); err != nil {
			return err
		}
	}
	return nil
}
