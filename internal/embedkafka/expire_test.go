package embedkafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/walhook/walhook/internal/embedkafka"
	"github.com/walhook/walhook/internal/kafkatest"
)

// A member killed while its JoinGroup is parked is removed by ExpireSilentMembers, and a live
// member that heartbeats is not. Without it, kfake keeps the dead member in the Stable group
// (half the time, see the package doc) or, at best, until its 6 s session timeout; the expiry
// here is 1 s.
func TestExpireSilentMembers(t *testing.T) {
	t.Parallel()
	const expiry = time.Second
	env := kafkatest.Start(t, kafkatest.WithOptions(embedkafka.Options{ExpireSilentMembers: expiry}))
	env.RequireCluster(t)
	ctx := ctxT(t)
	g := &rawGroup{t: t, name: kafkatest.GroupName(t, "expire"), session: 6 * time.Second} // kfake's minimum
	newClient := func() *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...))
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}

	// The live member forms the group alone.
	lcl := newClient()
	defer lcl.Close()
	lj := g.join(ctx, lcl, "")
	g.sync(ctx, lcl, lj)

	// The dead member's JoinGroup parks (the group waits for the live member to rejoin), then
	// its connection dies: a process killed inside JoinGroup.
	dcl := newClient()
	dead := g.joinReq("")
	resp, err := dead.RequestWith(ctx, dcl)
	if err != nil || !errors.Is(kerr.ErrorForCode(resp.ErrorCode), kerr.MemberIDRequired) {
		t.Fatalf("first join of the dead member: %v %v", err, resp)
	}
	deadID := resp.MemberID
	dctx, dcancel := context.WithCancel(ctx)
	parked := make(chan struct{})
	go func() { defer close(parked); _, _ = g.joinReq(deadID).RequestWith(dctx, dcl) }()
	time.Sleep(100 * time.Millisecond)
	dcancel()
	dcl.Close()
	<-parked

	// The live member rejoins as leader, assigns to both, and keeps its membership (rejoining
	// after the rebalance the removal starts) while the dead one must go within a few expiries.
	lj = g.join(ctx, lcl, lj.MemberID)
	var ids []string
	for _, m := range lj.Members {
		ids = append(ids, m.MemberID)
	}
	if !slices.Contains(ids, deadID) {
		t.Fatalf("the rebalance left out the dead member %s: %v", deadID, ids)
	}
	g.sync(ctx, lcl, lj)
	start := time.Now()
	kafkatest.Eventually(t, 4*expiry, func() error {
		if !g.heartbeat(ctx, lcl, lj) {
			lj = g.join(ctx, lcl, lj.MemberID)
			g.sync(ctx, lcl, lj)
		}
		state, ids := g.describe(ctx, lcl)
		if state != "Stable" || !slices.Equal(ids, []string{lj.MemberID}) {
			return fmt.Errorf("group %s %v; want Stable with only the live member %s", state, ids, lj.MemberID)
		}
		return nil
	})
	t.Logf("dead member %s removed within %s", deadID, time.Since(start).Round(10*time.Millisecond))
	// The live member stays over several more expiries.
	for end := time.Now().Add(3 * expiry); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if !g.heartbeat(ctx, lcl, lj) {
			t.Fatalf("the live member lost its generation: %v", g.describeString(ctx, lcl))
		}
	}
}

// rawGroup speaks the classic group protocol by hand, so the test controls when a member's
// connection dies.
type rawGroup struct {
	t       *testing.T
	name    string
	session time.Duration
}

func (g *rawGroup) joinReq(memberID string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = g.name, memberID, "consumer"
	req.SessionTimeoutMillis = int32(g.session.Milliseconds())
	req.RebalanceTimeoutMillis = int32(g.session.Milliseconds())
	p := kmsg.NewJoinGroupRequestProtocol()
	p.Name, p.Metadata = "range", (&kmsg.ConsumerMemberMetadata{Topics: []string{"t"}}).AppendTo(nil)
	req.Protocols = append(req.Protocols, p)
	return req
}

// join joins, taking the member id the broker requires first when memberID is empty.
func (g *rawGroup) join(ctx context.Context, cl *kgo.Client, memberID string) *kmsg.JoinGroupResponse {
	g.t.Helper()
	for {
		resp, err := g.joinReq(memberID).RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if errors.Is(err, kerr.MemberIDRequired) {
			memberID = resp.MemberID
			continue
		}
		if err != nil {
			g.t.Fatalf("join %s: %v", memberID, err)
		}
		return resp
	}
}

// sync syncs; the leader gives every member one partition.
func (g *rawGroup) sync(ctx context.Context, cl *kgo.Client, j *kmsg.JoinGroupResponse) {
	g.t.Helper()
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group, req.MemberID, req.Generation = g.name, j.MemberID, j.Generation
	if j.LeaderID == j.MemberID {
		for i, m := range j.Members {
			a := kmsg.NewSyncGroupRequestGroupAssignment()
			a.MemberID = m.MemberID
			a.MemberAssignment = (&kmsg.ConsumerMemberAssignment{Topics: []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t", Partitions: []int32{int32(i)}}}}).AppendTo(nil)
			req.GroupAssignment = append(req.GroupAssignment, a)
		}
	}
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		g.t.Fatalf("sync %s: %v", j.MemberID, err)
	}
}

// heartbeat reports whether the generation of j is still current.
func (g *rawGroup) heartbeat(ctx context.Context, cl *kgo.Client, j *kmsg.JoinGroupResponse) bool {
	g.t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group, req.MemberID, req.Generation = g.name, j.MemberID, j.Generation
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, kerr.RebalanceInProgress), errors.Is(err, kerr.IllegalGeneration):
		return false
	}
	g.t.Fatalf("heartbeat %s: %v", j.MemberID, err)
	return false
}

func (g *rawGroup) describe(ctx context.Context, cl *kgo.Client) (string, []string) {
	g.t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{g.name}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		g.t.Fatal(err)
	}
	var ids []string
	for _, m := range resp.Groups[0].Members {
		ids = append(ids, m.MemberID)
	}
	return resp.Groups[0].State, ids
}

func (g *rawGroup) describeString(ctx context.Context, cl *kgo.Client) string {
	state, ids := g.describe(ctx, cl)
	return fmt.Sprintf("group %s %v", state, ids)
}
