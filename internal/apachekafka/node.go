package apachekafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/walhook/walhook/internal/childproc"
)

// Node is one combined broker+controller JVM of a Cluster.
type Node struct {
	ID             int
	Port           int // the PLAINTEXT broker listener on 127.0.0.1
	ControllerPort int // the KRaft controller listener on 127.0.0.1

	dir string
	c   *Cluster

	mu     sync.Mutex
	proc   *process // guarded by mu; nil when the node does not run
	paused bool     // guarded by mu
}

// process is one JVM run of a node.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the JVM exited and was reaped
	err    error         // the exit status; set before exited is closed
}

// Addr is the node's bootstrap address.
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// Pid returns the running JVM's process id, 0 when the node does not run.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	return n.proc.cmd.Process.Pid
}

// Running reports whether the node's JVM runs (paused counts as running).
func (n *Node) Running() bool { return n.Pid() != 0 }

// format runs Kafka's StorageTool on the node's log directory.
func (n *Node) format(ctx context.Context) error {
	args := append(n.jvmArgs(64), "kafka.tools.StorageTool", "format", "--ignore-formatted",
		"-t", n.c.clusterID, "-c", n.propertiesPath())
	cmd := exec.CommandContext(ctx, n.c.dist.Java, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apachekafka: format node %d storage: %w: %s", n.ID, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

func (n *Node) jvmArgs(heapMB int) []string {
	args := []string{
		"-Xms64m", "-Xmx" + strconv.Itoa(heapMB) + "m",
		"-XX:+ExitOnOutOfMemoryError",
		"-Djava.awt.headless=true",
		"-Dlog4j2.configurationFile=" + n.log4jPath(),
		"-Dkafka.logs.dir=" + n.dir,
	}
	args = append(args, n.c.opts.JVMFlags...)
	return append(args, "-cp", n.c.dist.Classpath())
}

// launch starts the node's JVM through childproc, whose forking thread lives until the JVM exits:
// Linux delivers Pdeathsig when the thread that forked the child exits.
func (n *Node) launch() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		return fmt.Errorf("apachekafka: node %d runs already (pid %d)", n.ID, n.proc.cmd.Process.Pid)
	}
	stdout, err := os.OpenFile(n.stdoutPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("apachekafka: node %d: %w", n.ID, err)
	}
	args := append(n.jvmArgs(n.c.opts.HeapMB), "kafka.Kafka", n.propertiesPath())
	p := &process{cmd: exec.Command(n.c.dist.Java, args...), exited: make(chan struct{})}
	p.cmd.Dir = n.dir
	p.cmd.Stdout, p.cmd.Stderr = stdout, stdout
	p.cmd.SysProcAttr = sysProcAttr()
	child, err := childproc.Start(p.cmd)
	if err != nil {
		stdout.Close()
		return fmt.Errorf("apachekafka: start node %d (%s): %w", n.ID, n.c.dist.Java, err)
	}
	go func() { // owned by the Node: ends when the JVM exits; Kill waits for it
		<-child.Exited()
		stdout.Close()
		p.err = child.Err()
		close(p.exited)
	}()
	n.proc, n.paused = p, false
	n.c.opts.Log("apachekafka: node %d started (pid %d, port %d)", n.ID, p.cmd.Process.Pid, n.Port)
	return nil
}

// exitedEarly returns an error when the JVM already exited, with the end of its log.
func (n *Node) exitedEarly() error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("apachekafka: node %d does not run", n.ID)
	}
	select {
	case <-p.exited:
		return fmt.Errorf("apachekafka: node %d exited during start (%v); %s ends with:\n%s\n%s",
			n.ID, p.err, n.LogPath(), logTail(n.LogPath(), 3000), logTail(n.stdoutPath(), 1000))
	default:
		return nil
	}
}

// Kill SIGKILLs the node's JVM (its process group) and waits until it is gone. Killing a node
// that does not run is a no-op.
func (n *Node) Kill() error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("apachekafka: node %d (pid %d) did not exit 30 s after SIGKILL", n.ID, pid)
	}
	n.mu.Lock()
	if n.proc == p {
		n.proc, n.paused = nil, false
	}
	n.mu.Unlock()
	n.c.opts.Log("apachekafka: node %d killed (pid %d)", n.ID, pid)
	return nil
}

// Stop shuts the node down cleanly (SIGTERM: controlled shutdown, leadership moved away), and
// kills it when that takes longer than ctx allows.
func (n *Node) Stop(ctx context.Context) error {
	n.mu.Lock()
	p := n.proc
	paused := n.paused
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if paused {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
		n.mu.Lock()
		if n.proc == p {
			n.proc, n.paused = nil, false
		}
		n.mu.Unlock()
		return nil
	case <-ctx.Done():
		return n.Kill()
	}
}

// Restart starts a node that was killed or stopped, on the same ports and data, and waits until
// it serves metadata again.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.launch(); err != nil {
		return err
	}
	return n.waitServing(ctx)
}

// Pause stops the JVM with SIGSTOP: it keeps its sockets but answers nothing, so its sessions
// with the controller and clients time out as after a long GC pause or a network partition.
func (n *Node) Pause() error { return n.signal(syscall.SIGSTOP, true) }

// Resume continues a paused JVM with SIGCONT.
func (n *Node) Resume() error { return n.signal(syscall.SIGCONT, false) }

func (n *Node) signal(sig syscall.Signal, paused bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return fmt.Errorf("apachekafka: node %d does not run", n.ID)
	}
	if err := syscall.Kill(-n.proc.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("apachekafka: signal node %d: %w", n.ID, err)
	}
	n.paused = paused
	n.c.opts.Log("apachekafka: node %d %s", n.ID, sig)
	return nil
}

// waitPort waits until the node accepts TCP connections on its broker port.
func (n *Node) waitPort(ctx context.Context) error {
	var d net.Dialer
	for {
		if err := n.exitedEarly(); err != nil {
			return err
		}
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := d.DialContext(dctx, "tcp", n.Addr())
		cancel()
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("apachekafka: node %d did not listen on %s: %w; %s ends with:\n%s",
				n.ID, n.Addr(), errors.Join(ctx.Err(), err), n.LogPath(), logTail(n.LogPath(), 3000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CPUTime is the user+system CPU the node's running JVM has used, from /proc (Linux only).
func (n *Node) CPUTime() (time.Duration, error) {
	pid := n.Pid()
	if pid == 0 {
		return 0, fmt.Errorf("apachekafka: node %d does not run", n.ID)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("apachekafka: node %d CPU: %w", n.ID, err)
	}
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+1:]) // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("apachekafka: node %d CPU: unexpected /proc stat %q", n.ID, b)
	}
	utime, _ := strconv.ParseInt(string(f[11]), 10, 64)
	stime, _ := strconv.ParseInt(string(f[12]), 10, 64)
	const clockTicks = 100 // USER_HZ on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}
