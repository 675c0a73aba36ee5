package embedpg

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helperEnv = "WALHOOK_EMBEDPG_HELPER"

// TestHelperStartAndHang is not a test: TestServerDiesWithItsParent runs the test binary with it
// as a child that starts a cluster, reports it and waits to be killed.
func TestHelperStartAndHang(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestServerDiesWithItsParent")
	}
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("started", c.cmd.Process.Pid, c.Dir())
	select {}
}

// A walhook killed with SIGKILL runs no cleanup; Pdeathsig must still take the server down.
func TestServerDiesWithItsParent(t *testing.T) {
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperStartAndHang$")
	helper.Env = append(os.Environ(), helperEnv+"=1")
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "started" {
		helper.Process.Kill()
		helper.Wait()
		t.Fatalf("helper said %q", line)
	}
	pid, _ := strconv.Atoi(f[1])
	t.Cleanup(func() { os.RemoveAll(f[2]) }) // the helper never gets to Stop

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for groupAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(-pid, syscall.SIGKILL)
			t.Fatalf("postmaster %d outlived its parent", pid)
		}
		time.Sleep(pollInterval)
	}
}
