package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/walhook/walhook/internal/childproc"
	"github.com/walhook/walhook/internal/embedkafka"
)

// Environment of the broker helper process: the test binary re-executes itself with
// envBrokerDir set and, instead of running tests, serves kfake until SIGTERM.
const (
	envBrokerDir  = "WALHOOK_E2E_BROKER_DIR"
	envBrokerPort = "WALHOOK_E2E_BROKER_PORT"
	brokerReady   = "walhook-e2e-broker "
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envBrokerDir); dir != "" {
		os.Exit(runBroker(dir))
	}
	os.Exit(m.Run())
}

// runBroker is the main of the broker helper: kfake (persisted to dir, never compacting,
// expiring silent group members) on 127.0.0.1, its address printed as one line on stdout, until
// SIGTERM or SIGINT.
func runBroker(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	port, _ := strconv.Atoi(os.Getenv(envBrokerPort))
	// NoCompaction: kfake compacts batches of open transactions, so the open transaction of a
	// SIGKILLed bubbleup would erase committed changelog state once it aborts. ExpireSilentMembers:
	// kfake sometimes never expires a stage killed inside JoinGroup, and the group would stay
	// Stable with the dead member owning partitions; 30 s is three session timeouts of every
	// stage. Both are kfake bugs, see embedkafka's package doc. Warnings (removed members) go to
	// the test's stderr.
	logger, err := zap.NewProductionConfig().Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker: logger:", err)
		return 1
	}
	defer func() { _ = logger.Sync() }()
	stack, err := embedkafka.Start(ctx, embedkafka.Options{DataDir: dir, Port: port, RegistryPort: -1, Partitions: 4,
		CleanerBackoff: embedkafka.NoCompaction, ExpireSilentMembers: 30 * time.Second,
		Logger: logger.WithOptions(zap.IncreaseLevel(zap.WarnLevel)).Named("broker")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		return 1
	}
	fmt.Printf("%s%s\n", brokerReady, strings.Join(stack.Brokers(), ","))
	<-ctx.Done()
	if err := stack.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "broker: close:", err)
		return 1
	}
	return 0
}

// startBroker runs the broker helper as a child process persisted to dir and returns its
// address; the child is killed when t ends (and by the kernel if the test process dies).
func startBroker(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envBrokerDir+"="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	child, err := childproc.Start(cmd)
	if err != nil {
		t.Fatalf("broker: start %s: %v", os.Args[0], err)
	}
	exited := child.Exited()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), brokerReady); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-exited:
		t.Fatalf("broker: exited before it listened (stderr above)")
	case <-time.After(30 * time.Second):
		t.Fatalf("broker: no address within 30s")
	}
	return ""
}
