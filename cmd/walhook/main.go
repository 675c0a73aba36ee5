// Command walhook is the one binary: a subcommand per stage, an all-in-one dev mode and admin
// commands. Signal handling lives here and only here.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, stop listening: a second Ctrl-C then kills the process the default
	// way, for when a clean shutdown hangs.
	context.AfterFunc(ctx, stop)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "walhook:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit code (for example `walhook status` crossing a threshold)
// after its command has already printed what it had to say.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
