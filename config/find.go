package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// EnvConfig names the config file when --config is not given.
const EnvConfig = "WALHOOK_CONFIG"

// DefaultFile is the config file looked for in the working directory when neither --config
// nor WALHOOK_CONFIG names one.
const DefaultFile = "walhook.yaml"

// ErrNoConfig: no config file was named and there is none in the working directory.
var ErrNoConfig = errors.New("no config file")

// Find returns the config file to read, in the one order every walhook command uses: flag
// (--config), else $WALHOOK_CONFIG, else ./walhook.yaml. how says which one it was, for messages.
// A file that is named but does not exist is an error naming where the name came from; when
// nothing names a file and there is no ./walhook.yaml, the error wraps ErrNoConfig and says the
// three ways to give one.
func Find(flag string, lookupEnv func(string) (string, bool)) (path, how string, err error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	if flag != "" {
		return flag, "--config", exists(flag, "--config "+flag)
	}
	if env, ok := lookupEnv(EnvConfig); ok && env != "" {
		return env, EnvConfig, exists(env, EnvConfig+"="+env)
	}
	if _, err := os.Stat(DefaultFile); err == nil {
		return DefaultFile, "./" + DefaultFile, nil
	}
	return "", "", fmt.Errorf("%w: pass --config FILE, set %s, or put a %s in this directory "+
		"(`walhook config init` writes a starter; after `walhook dev`, `. .walhook/dev.env` sets %s)",
		ErrNoConfig, EnvConfig, DefaultFile, EnvConfig)
}

func exists(path, named string) error {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("config file %s does not exist (%s); fix the path, or `walhook config init --config %s` writes a starter", path, named, path)
	default:
		return fmt.Errorf("config file %s (%s): %w", path, named, err)
	}
}
