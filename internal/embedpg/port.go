package embedpg

import (
	"fmt"
	"net"
)

// freePort asks the kernel for a free port on 127.0.0.1. The port is free only until someone
// else binds it; launchRetrying handles losing that race.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("embedpg: find a free port on 127.0.0.1: %w; pass Options.Port", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
