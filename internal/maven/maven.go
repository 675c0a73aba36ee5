// Package maven fetches Java artifacts and their runtime dependencies from Maven Central (or the
// mirrors in ~/.m2/settings.xml) with the machine's Maven into a cache directory, once, and finds
// a Java new enough to run them. internal/apachekafka (the Kafka broker) and the CDC benchmark
// (Kafka Connect with Debezium) use it; nothing it fetches is ever written into the repository.
//
// This package must not import other walhook packages.
package maven

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Artifact is a Maven coordinate.
type Artifact struct{ Group, Name, Version string }

func (a Artifact) String() string { return a.Group + ":" + a.Name + ":" + a.Version }

// MissingToolError says that Java or Maven is not installed.
type MissingToolError struct {
	Tool string // "java" or "mvn"
	msg  string
}

func (e *MissingToolError) Error() string { return e.msg }

// IsMissingTool reports whether err says that Java or Maven is missing, so a test on a developer
// machine without them can skip.
func IsMissingTool(err error) bool {
	var m *MissingToolError
	return errors.As(err, &m)
}

const completeMarker = ".complete"

// Resolve makes dir/libs hold every jar of artifacts' runtime classpath and returns that folder.
// A dir resolved before is returned at once without Maven or a network. Concurrent callers (two
// test binaries) wait for one resolution through a lock file beside dir; a killed resolution
// leaves nothing that looks complete. what names the artifacts in errors ("the Apache Kafka
// broker").
func Resolve(ctx context.Context, dir, what string, artifacts ...Artifact) (string, error) {
	libs := filepath.Join(dir, "libs")
	if resolved(dir) {
		return libs, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("maven: create cache directory for %s: %w", what, err)
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if resolved(dir) { // another process resolved it while we waited for the lock
		return libs, nil
	}
	if err := mavenResolve(ctx, dir, what, artifacts); err != nil {
		return "", err
	}
	return libs, nil
}

func resolved(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil
}

func mavenResolve(ctx context.Context, dir, what string, artifacts []Artifact) error {
	names := make([]string, len(artifacts))
	for i, a := range artifacts {
		names[i] = a.String()
	}
	list := strings.Join(names, ", ")
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return &MissingToolError{Tool: "mvn", msg: fmt.Sprintf("maven: Maven (mvn) is not on PATH: it resolves %s (%s) from Maven Central "+
			"into %s once; install it (apt-get install maven) or copy a resolved libs/ folder there with an empty %s file", what, list, dir, completeMarker)}
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".resolving-")
	if err != nil {
		return fmt.Errorf("maven: %w", err)
	}
	defer os.RemoveAll(tmp)
	pom := filepath.Join(tmp, "pom.xml")
	if err := os.WriteFile(pom, []byte(pomXML(artifacts)), 0o644); err != nil {
		return fmt.Errorf("maven: write pom: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mvn, "-q", "-B", "-f", pom, "dependency:copy-dependencies",
		"-DincludeScope=runtime", "-DoutputDirectory="+filepath.Join(tmp, "libs"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("maven: mvn could not resolve %s (%s): %w; check that Maven Central is reachable "+
			"(or a mirror in ~/.m2/settings.xml) and that the versions exist; mvn said:\n%s", what, list, err, tail(out.Bytes(), 2000))
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), nil, 0o644); err != nil {
		return fmt.Errorf("maven: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("maven: remove incomplete %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("maven: move resolved jars into %s: %w", dir, err)
	}
	return nil
}

func pomXML(artifacts []Artifact) string {
	var b strings.Builder
	b.WriteString(`<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.walhook</groupId>
  <artifactId>walhook-resolve</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
`)
	for _, a := range artifacts {
		fmt.Fprintf(&b, "    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n", a.Group, a.Name, a.Version)
	}
	b.WriteString("  </dependencies>\n</project>\n")
	return b.String()
}

// FindJava returns JAVA_HOME's java or the one on PATH, checking that it is at least Java
// minMajor; what names what needs it in errors.
func FindJava(ctx context.Context, minMajor int, what string) (string, error) {
	java := ""
	if home := os.Getenv("JAVA_HOME"); home != "" {
		java = filepath.Join(home, "bin", "java")
		if _, err := os.Stat(java); err != nil {
			return "", fmt.Errorf("maven: JAVA_HOME=%s has no bin/java: point it at a JDK or JRE %d+ or unset it", home, minMajor)
		}
	} else {
		var err error
		if java, err = exec.LookPath("java"); err != nil {
			return "", &MissingToolError{Tool: "java", msg: fmt.Sprintf("maven: java is not on PATH: %s needs Java %d or newer; "+
				"install it (apt-get install openjdk-17-jre-headless) or set JAVA_HOME", what, minMajor)}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, java, "-version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("maven: %s -version: %w: %s", java, err, tail(out, 500))
	}
	if v := JavaMajor(out); v < minMajor {
		return "", fmt.Errorf("maven: %s is Java %d; %s needs %d or newer: set JAVA_HOME to a newer JDK", java, v, what, minMajor)
	}
	return java, nil
}

// JavaMajor parses the major version from `java -version` output (`version "17.0.15"`,
// `version "1.8.0_392"`); 0 when it cannot.
func JavaMajor(out []byte) int {
	m := regexp.MustCompile(`version "(\d+)(?:\.(\d+))?`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	major, _ := strconv.Atoi(string(m[1]))
	if major == 1 && len(m[2]) > 0 { // 1.8 is Java 8
		major, _ = strconv.Atoi(string(m[2]))
	}
	return major
}

// lockFile takes an exclusive flock on path, waiting until ctx ends.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("maven: open lock %s: %w", path, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("maven: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("maven: waiting for another process resolving into %s (lock %s): %w", filepath.Dir(path), path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
